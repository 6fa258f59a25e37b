"""The infrastructure as Azure will read it: templates that parse, wire up and stay keyless.

No Bicep compiler or Azure subscription is reachable here, so these tests read the templates
with two independent Bicep parsers and check what a failed or insecure deployment would reveal
too late: module parameters, role ids and scopes, storage and vault hardening, the Flex shape,
app settings and outputs. checkov runs too when its separate venv exists (`make iac`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tree_sitter_bicep
from tree_sitter import Language, Parser

from tests.infra_model import (
    FUNCTION_APP,
    INFRA,
    MAIN,
    ROOT,
    SKIP_COMMENT,
    app_settings,
    bicep_files,
    decorator_types,
    is_conditional,
    json_file,
    parse,
    resolve,
    resources,
    resources_of_type,
    text,
    unwrap,
    variables,
    walk,
)

MODULES = INFRA / "modules"

# Built-in role definition ids (Azure built-in roles reference).
ROLES = {
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# The resource each role is granted on: the narrowest one that works.
ROLE_SCOPE = {
    "Azure Event Hubs Data Receiver": "Microsoft.EventHub/namespaces/eventhubs",
    "Azure Event Hubs Data Sender": "Microsoft.EventHub/namespaces/eventhubs",
    "Storage Blob Data Owner": "Microsoft.Storage/storageAccounts",
    "Storage Queue Data Contributor": "Microsoft.Storage/storageAccounts",
    "Storage Table Data Contributor": "Microsoft.Storage/storageAccounts",
    "Key Vault Secrets User": "Microsoft.KeyVault/vaults",
    "Monitoring Metrics Publisher": "Microsoft.Insights/components",
}
# Settings Flex Consumption rejects or that would bring keys back.
FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION", "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE", "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "AzureWebJobsStorage",
    "EventHubConnection", "APPINSIGHTS_INSTRUMENTATIONKEY", "ALERTS_STORAGE_CONNECTION",
}


# ---- both parsers accept every file ----

@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses_with_pycep(path: Path) -> None:
    document = parse(path)
    assert document.get("resources") or document.get("modules"), "a template without resources"


def _error_nodes(node, found: list) -> list:
    if node.type == "ERROR" or node.is_missing:
        found.append(f"{node.start_point[0] + 1}:{node.start_point[1] + 1} {node.text[:60]!r}")
    for child in node.children:
        _error_nodes(child, found)
    return found


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_has_no_syntax_error_under_tree_sitter(path: Path) -> None:
    parser = Parser(Language(tree_sitter_bicep.language()))
    tree = parser.parse(path.read_bytes())
    assert _error_nodes(tree.root_node, []) == []


# ---- modules are wired as the compiler would demand ----

def _module_calls() -> list[tuple[Path, str, Path, dict]]:
    calls = []
    for path in bicep_files():
        for name, module in parse(path).get("modules", {}).items():
            target = (path.parent / module["detail"]["path"]).resolve()
            calls.append((path, name, target, unwrap(module["config"])))
    return calls


def test_module_calls_pass_known_parameters_and_every_required_one() -> None:
    calls = _module_calls()
    assert calls
    for caller, name, target, body in calls:
        assert target.is_file(), f"{caller.name}: module {name} points to missing {target}"
        declared = parse(target)["parameters"]
        given = set(body.get("params", {}))
        unknown = given - set(declared)
        assert not unknown, f"{caller.name}: module {name} passes unknown parameters {unknown}"
        required = {p for p, d in declared.items() if d.get("default") is None}
        assert required <= given, f"{caller.name}: module {name} misses {required - given}"


def test_module_outputs_used_by_callers_exist() -> None:
    for caller, name, target, _body in _module_calls():
        outputs = set(parse(target).get("outputs", {}))
        used = set(re.findall(rf"\b{name}\.outputs\.(\w+)", text(caller)))
        assert used <= outputs, f"{caller.name}: {name}.outputs has no {used - outputs}"


def test_every_module_file_is_used() -> None:
    used = {target for *_ignored, target, _body in _module_calls()}
    assert set(MODULES.glob("*.bicep")) == used


def test_parameter_file_sets_only_declared_parameters_and_all_required_ones() -> None:
    source = text(INFRA / "main.bicepparam")
    assert re.search(r"^using '\./main\.bicep'$", source, re.MULTILINE)
    assigned = set(re.findall(r"^param (\w+) =", source, re.MULTILINE))
    declared = parse(MAIN)["parameters"]
    assert assigned <= set(declared), assigned - set(declared)
    required = {p for p, d in declared.items() if d.get("default") is None}
    assert required <= assigned
    secure = {p for p, d in declared.items() if "secure" in decorator_types(d)}
    for name in secure & assigned:
        # A secret comes from the environment at deployment, never from the file itself.
        assert re.search(rf"^param {name} = readEnvironmentVariable\('\w+', ''\)$", source, re.MULTILINE)


# ---- roles: the right ids, least privilege, scoped to the resource ----

def _role_assignments() -> list[tuple[Path, str, str, dict]]:
    found = []
    for path in bicep_files():
        for name, body in resources_of_type(path, "Microsoft.Authorization/roleAssignments"):
            definition = body["properties"]["roleDefinitionId"]["function"]
            assert definition["type"] == "subscription_resource_id"
            role_id = resolve(definition["parameters"]["resource_name_1"], path)
            found.append((path, name, role_id, body))
    return found


def test_role_assignments_use_only_the_documented_built_in_roles() -> None:
    granted = {role_id for _path, _name, role_id, _body in _role_assignments()}
    assert granted == set(ROLES)


def test_each_role_is_scoped_to_its_resource_not_a_group_or_subscription() -> None:
    for path, name, role_id, body in _role_assignments():
        scope = body.get("scope")
        assert isinstance(scope, str), f"{path.name}:{name} has no resource scope"
        declared = dict((n, t) for n, t, _b in resources(path))
        assert declared.get(scope) == ROLE_SCOPE[ROLES[role_id]], f"{path.name}:{name} scoped to {scope}"


def test_role_assignment_names_are_deterministic_per_scope_principal_and_role() -> None:
    for path, name, _role_id, body in _role_assignments():
        guid = body["name"]["function"]
        assert guid["type"] == "guid", f"{path.name}:{name}"
        assert len(guid["parameters"]) == 3


def test_the_sender_role_is_optional_and_the_receiver_is_not() -> None:
    path = MODULES / "eventhub-access.bicep"
    raw = parse(path)["resources"]
    assert is_conditional(raw["sender"]["config"])
    assert not is_conditional(raw["receiver"]["config"])


# ---- storage, vault, telemetry hardening ----

def test_storage_account_accepts_identities_only_over_tls_1_2() -> None:
    [(_name, account)] = resources_of_type(MODULES / "storage.bicep", "Microsoft.Storage/storageAccounts")
    properties = account["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["defaultToOAuthAuthentication"] is True


def test_storage_has_the_deployment_and_dead_letter_containers_and_the_alert_tables() -> None:
    path = MODULES / "storage.bicep"
    containers = resources_of_type(path, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert {resolve(body["name"], path) for _n, body in containers} == {
        "deploymentContainerName", "deadletterContainerName"}
    assert all(body["properties"]["publicAccess"] == "None" for _n, body in containers)
    main_storage = unwrap(parse(MAIN)["modules"]["storage"]["config"])["params"]
    assert variables(MAIN)[main_storage["tableNames"]] == ["alerts", "alertgroups", "health"]
    assert resources_of_type(path, "Microsoft.Storage/storageAccounts/tableServices/tables")


def test_key_vault_is_rbac_only_with_soft_delete_and_purge_protection() -> None:
    [(_name, vault)] = [
        (n, b) for n, b in resources_of_type(MODULES / "keyvault.bicep", "Microsoft.KeyVault/vaults")]
    properties = vault["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    assert properties["enablePurgeProtection"] is True
    assert properties["enabledForTemplateDeployment"] is False


def test_every_secret_parameter_is_secure_and_reaches_key_vault_only() -> None:
    secrets = ["teamsWebhookUrl", "slackWebhookUrl", "webhookUrl", "webhookSecret"]
    for path in (MAIN, MODULES / "keyvault.bicep"):
        parameters = parse(path)["parameters"]
        for name in secrets:
            assert "secure" in decorator_types(parameters[name]), f"{path.name}: {name}"
    assert "secure" in decorator_types(parse(MODULES / "keyvault-secret.bicep")["parameters"]["value"])
    # In main.bicep a secret is declared, handed to the vault module, and otherwise only tested
    # for emptiness: no other expression (an app setting, an output) can carry its value.
    for line in text(MAIN).splitlines():
        expression = re.sub(r"^\s*(param \w+|[\w']+:)", "", line)  # drop a declaration or object key
        expression = re.sub(r"'[^']*'", "''", expression)  # and string literals
        for name in secrets:
            for use in re.finditer(rf"\b{name}\b", expression):
                before = expression[:use.start()]
                assert before.endswith(("empty(", ".")) or (
                    expression.strip() == name and re.match(rf"^\s*{name}:", line)), f"{name} in: {line}"


def test_application_insights_accepts_entra_id_ingestion_only() -> None:
    path = MODULES / "monitoring.bicep"
    [(_n, component)] = resources_of_type(path, "Microsoft.Insights/components")
    assert component["properties"]["DisableLocalAuth"] is True
    [(_n, workspace)] = resources_of_type(path, "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["features"]["disableLocalAuth"] is True
    assert app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith(
        ";Authorization=AAD")


def test_event_hub_namespace_has_tls_1_2_and_no_sas_by_default() -> None:
    path = MODULES / "eventhub.bicep"
    [(_n, namespace)] = resources_of_type(path, "Microsoft.EventHub/namespaces")
    assert namespace["properties"]["minimumTlsVersion"] == "1.2"
    assert parse(path)["parameters"]["disableLocalAuth"]["default"] is True
    assert parse(MAIN)["parameters"]["eventHubDisableLocalAuth"]["default"] is True


def test_an_existing_hub_replaces_the_new_one_but_keeps_consumer_group_and_roles() -> None:
    modules = parse(MAIN)["modules"]
    assert is_conditional(modules["eventHub"]["config"])
    assert not is_conditional(modules["eventHubAccess"]["config"])
    access = unwrap(modules["eventHubAccess"]["config"])
    assert access["scope"]["function"]["type"] == "resource_group"
    raw = parse(MODULES / "eventhub-access.bicep")["resources"]
    assert raw["namespace"]["existing"] and raw["hub"]["existing"]
    assert is_conditional(raw["consumerGroup"]["config"])  # $Default cannot be created


# ---- the function app ----

def test_function_app_is_flex_consumption_python_3_11_with_the_user_assigned_identity() -> None:
    [(_n, plan)] = resources_of_type(FUNCTION_APP, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    [(_n, site)] = resources_of_type(FUNCTION_APP, "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    assert properties["keyVaultReferenceIdentity"] == "identityId"
    config = properties["functionAppConfig"]
    assert config["runtime"]["name"] == "python"
    assert parse(FUNCTION_APP)["parameters"]["pythonVersion"]["default"] == "3.11"
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}


def test_function_app_carries_the_azd_service_tag_of_azure_yaml() -> None:
    [(_n, site)] = resources_of_type(FUNCTION_APP, "Microsoft.Web/sites")
    # pycep keeps the quotes of a quoted object key.
    tagged = [node for node in walk(site["tags"]) if isinstance(node, dict) and "'azd-service-name'" in node]
    assert tagged and tagged[0]["'azd-service-name'"] == "api"
    azure_yaml = text(ROOT / "azure.yaml")
    assert re.search(r"^services:\n  api:\n    project: \.\n    language: python\n    host: function$",
                     azure_yaml, re.MULTILINE)
    assert re.search(r"^  path: infra$", azure_yaml, re.MULTILINE)


def test_app_settings_are_identity_based_with_nothing_flex_rejects() -> None:
    settings = app_settings()
    assert not FORBIDDEN_SETTINGS & set(settings)
    for prefix in ("AzureWebJobsStorage", "EventHubConnection"):
        assert settings[f"{prefix}__credential"] == "managedidentity"
        assert settings[f"{prefix}__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["EventHubConnection__fullyQualifiedNamespace"] == "eventHubNamespaceFqdn"


def test_secret_settings_are_key_vault_references_only() -> None:
    settings = app_settings()
    for name in ("TEAMS_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "WEBHOOK_URL", "WEBHOOK_SECRET"):
        reference = r"@Microsoft\.KeyVault\(SecretUri=\$\{keyVaultUri\}secrets/\$\{secretNames\.\w+\}/\)"
        assert re.fullmatch(reference, settings[name]), name


def test_user_settings_cannot_override_the_wiring() -> None:
    union = variables(FUNCTION_APP)["allSettings"]["function"]["parameters"]
    # union() lets later objects win: the user's object must come first.
    assert next(iter(union.values())) == "additionalAppSettings"


def test_no_key_connection_string_or_list_keys_anywhere_in_infra() -> None:
    for path in [*bicep_files(), INFRA / "main.bicepparam"]:
        source = text(path)
        for pattern in (r"listKeys\(", r"AccountKey=", r"SharedAccessKey", r"listConnectionStrings",
                        r"primaryKey", r"DefaultEndpointsProtocol"):
            assert not re.search(pattern, source), f"{path.name}: {pattern}"


def test_outputs_contain_no_secret() -> None:
    for path in bicep_files():
        document = parse(path)
        secure = {n for n, p in document["parameters"].items() if "secure" in decorator_types(p)}
        for name, output in document.get("outputs", {}).items():
            assert "secure" not in decorator_types(output)
            referenced = {node for node in walk(output["value"]) if isinstance(node, str)}
            assert not referenced & secure, f"{path.name}: output {name} uses {referenced & secure}"
            assert not re.search(r"(?i)key|secret|password|token", name) or name == "KEY_VAULT_NAME", name


# ---- checkov: zero failures, every skip justified ----

def test_every_checkov_skip_is_inline_and_justified() -> None:
    skips = 0
    for path in bicep_files():
        for match in SKIP_COMMENT.finditer(text(path)):
            skips += 1
            reason = match.group("rest")
            assert reason.startswith(": ") and len(reason) > 40, f"{path.name}: {match.group(0)}"
    assert skips  # the documented exceptions exist; a checkov config file must not hide them instead
    assert not list(ROOT.glob(".checkov*"))


CHECKOV = ROOT / ".venv-iac" / "bin" / "checkov"


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov lives in its own venv: run `make iac` first")
def test_checkov_reports_no_failed_check() -> None:
    result = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "--skip-download", "--compact", "--quiet", "-d", str(INFRA)],
        capture_output=True, text=True, timeout=600, check=False)
    summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", result.stdout)
    assert summary, result.stdout + result.stderr
    assert summary.group(2) == "0", result.stdout
    assert int(summary.group(1)) > 20
    assert "Parsing errors" not in result.stdout


# ---- host.json, local settings, package contents ----

def test_host_json_pins_the_bundle_and_sets_event_hub_options_explicitly() -> None:
    host = json_file(ROOT / "host.json")
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    event_hubs = host["extensions"]["eventHubs"]
    for option in ("maxEventBatchSize", "prefetchCount", "batchCheckpointFrequency"):
        assert isinstance(event_hubs[option], int) and event_hubs[option] > 0, option
    assert event_hubs["prefetchCount"] >= 2 * event_hubs["maxEventBatchSize"]
    assert event_hubs["batchCheckpointFrequency"] == 1  # checkpoint after every batch: least replay
    assert re.fullmatch(r"\d\d:\d\d:\d\d", host["functionTimeout"])
    assert host["logging"]["logLevel"]["Function"] == "Information"
    # The per-batch log line is the audit trail: it must not be sampled away.
    assert "Trace" in host["logging"]["applicationInsights"]["samplingSettings"]["excludedTypes"]


def test_local_settings_example_runs_on_azurite_with_the_python_worker() -> None:
    values = json_file(ROOT / "local.settings.json.example")["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert "local.settings.json" in text(ROOT / ".gitignore").split()


def test_funcignore_keeps_the_app_and_leaves_out_development_files() -> None:
    ignored = {line.strip() for line in text(ROOT / ".funcignore").splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in ("function_app.py", "host.json", "requirements.txt", "detection"):
        assert needed not in ignored
    for left_out in (".venv*", "node_modules", "tests", "infra", "local.settings.json", ".git*"):
        assert left_out in ignored


def test_bicep_files_are_not_shadowed_by_a_json_copy() -> None:
    # A stale ARM JSON beside main.bicep would be deployed by some tools instead of the Bicep.
    assert not list(INFRA.rglob("*.json"))


@pytest.mark.skipif(shutil.which("bicep") is None, reason="no Bicep CLI on this machine")
def test_bicep_cli_builds_the_template_and_its_parameters() -> None:
    for command in (["bicep", "build", str(MAIN), "--stdout"],
                    ["bicep", "build-params", str(INFRA / "main.bicepparam"), "--stdout"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
