"""One source of truth for app settings: detection/settings.py, checked against everything else.

The code declares every setting once (`declarations()`); the Bicep sets some of them on the deployed
app; the host binds a few by `%NAME%`; local.settings.json.example sets them for `func start`; the
README shows the table generated from the declarations. These tests fail when any of those drift:
a setting the Bicep sets but no code reads, an infra setting the Bicep forgot, a binding expression
nothing defines, a README table edited by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from detection.settings import Settings, declarations, markdown_table
from tests.infra_model import FUNCTION_APP, MAIN, app_settings, parse, unwrap, variables

ROOT = Path(__file__).resolve().parent.parent

# Settings the Functions host and the platform read, not our code: the identity-based connection
# collections (the trigger's `EventHubConnection`, the host's `AzureWebJobsStorage`) and telemetry.
PLATFORM = re.compile(r"^(AzureWebJobsStorage__\w+|EventHubConnection__\w+|APPLICATIONINSIGHTS_\w+)$")
# local.settings.json also holds what only `func start` reads.
LOCAL_ONLY = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}

DECLARED = {d["name"]: d for d in declarations()}


def _binding_expressions() -> set[str]:
    source = (ROOT / "function_app.py").read_text(encoding="utf-8")
    return set(re.findall(r'"%(\w+)%"', source))


def test_every_infra_setting_is_set_by_the_bicep() -> None:
    infra = {name for name, d in DECLARED.items() if d["infra"]}
    assert infra - set(app_settings()) == set()


def test_every_setting_the_bicep_sets_is_declared_or_a_platform_setting() -> None:
    for name in app_settings():
        if PLATFORM.match(name) and name not in DECLARED:
            continue
        assert name in DECLARED, f"the Bicep sets {name}, which no code declares"
        assert DECLARED[name]["infra"], f"{name} is set by the Bicep: declare it with infra=True"


def test_a_setting_without_infra_works_from_its_documented_default() -> None:
    # Every default parses, and the settings not deployed form a valid configuration together.
    settings = Settings.from_env({})
    for d in declarations():
        if d["infra"]:
            continue
        if d["default"] is not None:
            assert d["parse"](d["default"]) == getattr(settings, d["field"]), d["name"]
        else:
            assert getattr(settings, d["field"]) is None, f"{d['name']}: unset must mean off"
        assert d["doc"].strip().endswith((".", ")")), f"{d['name']}: the table needs a sentence"


def test_secret_settings_are_deployed_as_key_vault_references_only() -> None:
    deployed = app_settings()
    for name, d in DECLARED.items():
        if d["secret"] and name in deployed:
            assert str(deployed[name]).startswith("@Microsoft.KeyVault("), name


def test_binding_expressions_resolve_in_azure_and_locally() -> None:
    # The host refuses to index a function whose %NAME% resolves to nothing.
    expressions = _binding_expressions()
    assert expressions == {"EVENTHUB_NAME", "EVENTHUB_CONSUMER_GROUP", "REDELIVER_SCHEDULE"}
    local = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    for name in expressions:
        assert DECLARED[name]["infra"], name
        assert name in app_settings(), name
        assert local.get(name), name


def test_local_settings_example_holds_only_known_settings() -> None:
    local = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    for name in local:
        assert name in DECLARED or name in LOCAL_ONLY or PLATFORM.match(name), name
    Settings.from_env({k: v for k, v in local.items() if not v.startswith("<")})  # valid as shipped


def test_names_the_bicep_creates_match_the_code_defaults() -> None:
    defaults = {name: d["default"] for name, d in DECLARED.items()}
    main_vars = variables(MAIN)
    tables = [defaults["ALERTS_TABLE"], defaults["GROUPS_TABLE"], defaults["HEALTH_TABLE"]]
    assert main_vars["tableNames"] == tables
    assert main_vars["deadletterContainerName"] == defaults["DEADLETTER_CONTAINER"]
    assert parse(MAIN)["parameters"]["redeliverSchedule"]["default"] == defaults["REDELIVER_SCHEDULE"]
    app = unwrap(parse(MAIN)["modules"]["functionApp"]["config"])["params"]
    assert app["deadletterContainerName"] == "deadletterContainerName"
    assert app_settings()["DEADLETTER_CONTAINER"] == "deadletterContainerName"
    assert parse(FUNCTION_APP)["parameters"]["deadletterContainerName"]


def test_the_readme_configuration_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- settings:begin -->\n(.*?)\n?<!-- settings:end -->", readme, re.DOTALL)
    if found is None:
        pytest.fail("README.md has no <!-- settings:begin --> ... <!-- settings:end --> block")
    assert found.group(1).strip() == markdown_table().strip(), (
        "README table differs: regenerate it with `python -m detection settings --markdown`")
