"""function_app.py as the Functions host sees it, and its batches handled for real.

The host itself cannot run here, so the contract is checked on our side: the functions the worker
indexes, their binding JSON and retry policy, start-up validation, and the built user functions
called with `func.EventHubEvent` batches made by the library's own trigger converter (bodies plus
SystemPropertiesArray / PartitionContext metadata, as the worker receives them) against Azurite,
a local webhook server and Azurite's blob service for dead letters.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
import types
import typing
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions._abc import RetryContext as HostRetryContext
from azure.functions.eventhub import EventHubTriggerConverter
from azure.functions.timer import TimerRequestConverter
from azure.storage.blob import BlobServiceClient

from detection import hosting
from detection.deadletter import DeadLetterStore
from detection.devserver import connection_string, free_port
from detection.rules import RuleError
from detection.settings import SettingsError
from tests.blob_azurite import blob_azurite  # noqa: F401 - fixture
from tests.conftest import state_env

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "management-activity-general.json"
LOGGER = "detection.function"
LAST_TRY = {"retry_count": 5, "max_retry_count": 5}
# Settings that pass start-up and need no running service (nothing is opened before the first batch).
NO_SERVICE = {"EVENTHUB_NAME": "m365-audit", "ALERTS_STORAGE_CONNECTION": "UseDevelopmentStorage=true"}

# Settings the app reads; cleared before each load so the developer's environment cannot leak in.
APP_SETTINGS = ("ALERTS_STORAGE_CONNECTION", "ALERTS_STORAGE_ENDPOINT", "AzureWebJobsStorage",
                "AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__tableServiceUri",
                "AzureWebJobsStorage__accountName", "TEAMS_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "WEBHOOK_URL",
                "WEBHOOK_SECRET", "RETENTION_DAYS", "DEADLETTER_CONTAINER", "HEALTH_TABLE",
                "REDELIVER_SCHEDULE", "HEALTH_SCHEDULE",
                "SUPPRESSION_OVERRIDES", "RULES_DIR")


def load_app(monkeypatch: pytest.MonkeyPatch, **env: str) -> types.ModuleType:
    """Import function_app.py afresh, as the worker does at start-up, with these app settings."""
    for name in APP_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    name = f"function_app_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The app with settings that need no service (the pipeline is only built on first use)."""
    return load_app(monkeypatch, **NO_SERVICE)


def functions(module: types.ModuleType) -> dict[str, Any]:
    """The indexed functions by name. Indexing happens once per app, as in the worker."""
    if not hasattr(module, "_indexed"):
        module._indexed = {fn.get_function_name(): fn for fn in module.app.get_functions()}
    return module._indexed


# ---- what the worker indexes ----

def test_the_app_registers_the_event_hub_function_and_three_timers(app: types.ModuleType) -> None:
    registered = functions(app)
    assert set(registered) == {"detect", "redeliver", "cleanup", "health"}
    triggers = {name: fn.get_trigger().get_binding_name() for name, fn in registered.items()}
    assert triggers == {"detect": "eventHubTrigger", "redeliver": "timerTrigger", "cleanup": "timerTrigger",
                        "health": "timerTrigger"}
    for fn in registered.values():
        assert len(fn.get_bindings()) == 1  # no output bindings: the code writes state itself


def test_event_hub_binding_json_is_what_the_host_expects(app: types.ModuleType) -> None:
    detect = functions(app)["detect"]
    [binding] = json.loads(detect.get_function_json())["bindings"]
    assert binding["type"] == "eventHubTrigger"
    assert binding["direction"].lower() == "in"
    assert binding["eventHubName"] == "%EVENTHUB_NAME%"
    assert binding["consumerGroup"] == "%EVENTHUB_CONSUMER_GROUP%"
    # The bare prefix: the host reads EventHubConnection__fullyQualifiedNamespace and friends.
    assert binding["connection"] == "EventHubConnection"
    assert binding["cardinality"].lower() == "many"
    assert binding["dataType"].lower() == "binary"
    parameters = list(detect.get_user_function().__code__.co_varnames[:2])
    assert parameters == [binding["name"], "context"]


def test_parameter_types_pass_the_workers_binding_checks(app: types.ModuleType) -> None:
    # The worker refuses to load a function whose annotation its converter does not accept
    # (a list[...] annotation is refused for cardinality many; typing.List is accepted).
    registered = functions(app)
    converters = {"eventHubTrigger": EventHubTriggerConverter, "timerTrigger": TimerRequestConverter}
    for fn in registered.values():
        binding = fn.get_trigger()
        hints = typing.get_type_hints(fn.get_user_function())
        converter = converters[binding.get_binding_name()]
        assert converter.check_input_type_annotation(hints[binding.name]), fn.get_function_name()


def _seconds(interval: str) -> int:
    hours, minutes, seconds = (int(part) for part in interval.split(":"))
    return int(timedelta(hours=hours, minutes=minutes, seconds=seconds).total_seconds())


def test_the_event_hub_function_has_a_bounded_exponential_retry_policy(app: types.ModuleType) -> None:
    policy = functions(app)["detect"].get_settings_dict("retry_policy")
    assert policy["strategy"] == "exponential_backoff"
    retries = int(policy["max_retry_count"])
    assert 1 <= retries <= 10  # bounded: -1 would hold the partition forever
    low, high = _seconds(policy["minimum_interval"]), _seconds(policy["maximum_interval"])
    assert 1 <= low < high <= 15 * 60
    worst_case = sum(min(high, low * 2 ** attempt) for attempt in range(retries))
    assert worst_case < 60 * 60  # a partition is never held back for more than an hour
    for timer in ("redeliver", "cleanup"):
        assert functions(app)[timer].get_settings_dict("retry_policy") is None  # the next tick retries


def test_timer_schedules(app: types.ModuleType) -> None:
    registered = functions(app)
    [redeliver] = json.loads(registered["redeliver"].get_function_json())["bindings"]
    [cleanup] = json.loads(registered["cleanup"].get_function_json())["bindings"]
    assert redeliver["schedule"] == "%REDELIVER_SCHEDULE%"
    # NCRONTAB has six fields (seconds first); the cleanup runs once a day at a fixed time.
    seconds, minutes, hours, *rest = cleanup["schedule"].split()
    assert len(rest) == 3 and rest == ["*", "*", "*"]
    assert all(field.isdigit() for field in (seconds, minutes, hours))
    for binding in (redeliver, cleanup):
        assert binding["runOnStartup"] is False  # a restart storm must not run them over and over
        assert binding["useMonitor"] is True


# ---- start-up validation ----

def test_a_bad_setting_stops_start_up_with_its_name_and_problem(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.CRITICAL), pytest.raises(SettingsError, match=r"RETENTION_DAYS.*at least 8"):
        load_app(monkeypatch, RETENTION_DAYS="3")
    assert any("RETENTION_DAYS" in r.getMessage() and r.levelno == logging.CRITICAL for r in caplog.records)


def test_an_unresolved_key_vault_reference_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/teams-webhook-url/)"
    with pytest.raises(SettingsError, match="TEAMS_WEBHOOK_URL: the Key Vault reference was not resolved"):
        load_app(monkeypatch, TEAMS_WEBHOOK_URL=reference)


def test_a_state_setting_is_validated_at_start_up_too(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="DELIVERY_MAX_AGE"):
        load_app(monkeypatch, DELIVERY_MAX_AGE="40d")


def test_settings_that_need_the_rules_are_checked_at_start_up_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # An override for a rule that is not loaded is only detectable once the rules are: they are
    # loaded at start-up, not by the first batch (which would fail through every retry instead).
    overrides = json.dumps({"no-such-rule": {"window": "60m"}})
    with pytest.raises(SettingsError, match=r"setting SUPPRESSION_OVERRIDES: .*'no-such-rule'"):
        load_app(monkeypatch, **NO_SERVICE, SUPPRESSION_OVERRIDES=overrides)


def test_a_rules_folder_that_cannot_load_stops_start_up_with_the_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seed = ROOT / "detection" / "rules" / "m365_teams_custom_app_interaction_allowed.toml"
    for name in ("a.toml", "b.toml"):
        (tmp_path / name).write_bytes(seed.read_bytes())  # the same rule_id twice
    with caplog.at_level(logging.CRITICAL), pytest.raises(RuleError, match=r"b\.toml: rule_id .* also used"):
        load_app(monkeypatch, **NO_SERVICE, RULES_DIR=str(tmp_path))
    assert any("start-up failed" in r.getMessage() and "b.toml" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("setting", ["REDELIVER_SCHEDULE", "HEALTH_SCHEDULE"])
@pytest.mark.parametrize(("schedule", "problem"), [
    ("every 5 minutes", "six fields"),
    ("00:05:00", "six fields"),  # a TimeSpan: App Service plans only, not Flex Consumption
    ("0 */0 * * * *", "minute field '*/0'"),
    ("0 0 24 * * *", "hour field '24'"),
    ("0 0 9 * * Mo", "day-of-week field 'Mo'"),
])
def test_a_bad_timer_schedule_stops_start_up_with_its_name(
        monkeypatch: pytest.MonkeyPatch, setting: str, schedule: str, problem: str) -> None:
    # The host would refuse to index the timer with a message that names neither setting nor field.
    with pytest.raises(SettingsError, match=f"setting {setting}: .*{re.escape(problem)}"):
        load_app(monkeypatch, **NO_SERVICE, **{setting: schedule})


@pytest.mark.parametrize("schedule", [
    "0 */5 * * * *", "*/5 * * * *", "0 30 9 * * 1-5", "0 0 9 * Jan Mon", "0 0,30 8-18/2 1 jan-mar sun-sat",
    "5/15 * * * * *", hosting.CLEANUP_SCHEDULE])
def test_the_schedules_the_host_accepts_pass_the_start_up_check(
        monkeypatch: pytest.MonkeyPatch, schedule: str) -> None:
    module = load_app(monkeypatch, **NO_SERVICE, REDELIVER_SCHEDULE=schedule, HEALTH_SCHEDULE=schedule)
    assert module.RUNTIME.settings.redeliver_schedule == module.RUNTIME.settings.health_schedule == schedule


def test_start_up_needs_no_service(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on these ports: importing must not try them (that happens on the first batch,
    # where a failure is retried like any other instead of killing the worker).
    blob = f"AccountName=devstoreaccount1;BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1"
    module = load_app(monkeypatch, ALERTS_STORAGE_CONNECTION=connection_string(free_port()),
                      AzureWebJobsStorage=blob)
    assert module.RUNTIME.settings.alerts_storage_connection


BLOB_ONLY = {"AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net/"}


@pytest.mark.parametrize(("env", "named"), [
    (BLOB_ONLY, "ALERTS_STORAGE_ENDPOINT"),  # nowhere to keep alert state
    ({**BLOB_ONLY, "ALERTS_STORAGE_ENDPOINT": "http://st.table.core.windows.net"},
     "setting ALERTS_STORAGE_ENDPOINT"),
    ({"AzureWebJobsStorage__accountName": "Not-An-Account"}, "setting AzureWebJobsStorage__accountName"),
    # A table-only connection string and no host storage: nowhere to write dead letters.
    ({"ALERTS_STORAGE_CONNECTION": connection_string(1)}, "AzureWebJobsStorage__blobServiceUri"),
    ({"ALERTS_STORAGE_CONNECTION": "UseDevelopmentStorage=true", "HEALTH_TABLE": "health-table"},
     "setting HEALTH_TABLE"),
], ids=["no-alert-state", "plain-http-endpoint", "bad-account-name", "no-dead-letter-container",
        "bad-health-table"])
def test_where_state_and_dead_letters_live_is_checked_at_start_up(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    # Found only on the first batch, such a setting would fail every batch through all its retries
    # and let the host checkpoint past them; at start-up it stops the app before anything is read.
    with pytest.raises(SettingsError, match=re.escape(named)):
        load_app(monkeypatch, EVENTHUB_NAME="m365-audit", **env)


# ---- batches as the worker hands them over ----

class RetryContext(HostRetryContext):
    def __init__(self, count: int, max_count: int) -> None:
        self._count, self._max = count, max_count

    @property
    def retry_count(self) -> int:
        return self._count

    @property
    def max_retry_count(self) -> int:
        return self._max

    @property
    def exception(self) -> Any:
        return None


class Context(func.Context):
    """The invocation context the worker passes (only the retry context matters to us)."""

    def __init__(self, retry_count: int = 0, max_retry_count: int = 5) -> None:
        self._retry = RetryContext(retry_count, max_retry_count)

    invocation_id = property(lambda self: "00000000-0000-0000-0000-000000000001")
    thread_local_storage = property(lambda self: None)
    function_name = property(lambda self: "detect")
    function_directory = property(lambda self: str(ROOT))
    trace_context = property(lambda self: None)
    retry_context = property(lambda self: self._retry)


def event_batch(bodies: list[bytes], *, partition: str = "3",
                first_sequence: int = 1200) -> list[func.EventHubEvent]:
    """A batch built by the library's own trigger converter from what the host sends the worker."""
    system_properties = [
        {"SequenceNumber": first_sequence + i, "Offset": str(81920 + 4096 * i), "PartitionKey": None,
         "EnqueuedTimeUtc": f"2026-01-05T10:00:{i:02d}Z", "x-opt-sequence-number": first_sequence + i,
         "x-opt-offset": str(81920 + 4096 * i), "x-opt-enqueued-time": f"2026-01-05T10:00:{i:02d}Z"}
        for i in range(len(bodies))]
    metadata = {
        "SystemPropertiesArray": meta.Datum(json.dumps(system_properties), "json"),
        "PartitionContext": meta.Datum(json.dumps({
            "FullyQualifiedNamespace": "evhns-test.servicebus.windows.net", "EventHubName": "m365-audit",
            "ConsumerGroup": "m365-detect", "PartitionId": partition}), "json"),
    }
    data = meta.Datum(types.SimpleNamespace(bytes=list(bodies)), "collection_bytes")
    events = EventHubTriggerConverter.decode(data, trigger_metadata=metadata)
    assert [e.get_body() for e in events] == bodies
    return events


def batch_lines(caplog: pytest.LogCaptureFixture, kind: str) -> list[dict[str, Any]]:
    found = []
    for record in caplog.records:
        match = re.fullmatch(rf"{kind} (\{{.*\}})", record.getMessage())
        if match:
            found.append(json.loads(match.group(1)))
    return found


@pytest.fixture
def live_env(azurite_connection: str, table_prefix: str, blob_azurite: str,  # noqa: F811
             httpserver: Any) -> dict[str, str]:
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=200)
    return state_env(azurite_connection, table_prefix, AzureWebJobsStorage=blob_azurite,
                     DEADLETTER_CONTAINER=f"dl{table_prefix.lower()}"[:60], EVENTHUB_NAME="m365-audit",
                     WEBHOOK_URL=httpserver.url_for("/hook"))


@pytest.mark.integration
def test_a_batch_is_detected_stored_notified_and_logged_once(
        monkeypatch: pytest.MonkeyPatch, live_env: dict[str, str], httpserver: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    module = load_app(monkeypatch, **live_env)
    detect = functions(module)["detect"].get_user_function()
    sample = SAMPLE.read_bytes()
    # The sample, the same cut short (it could match, so it is parsed and counted as a skip), nothing.
    bodies = [sample, sample[:-20], b"[]"]
    events = event_batch(bodies)

    with caplog.at_level(logging.INFO, logger=LOGGER):
        detect(events, Context())
    [line] = batch_lines(caplog, "batch")
    assert line["bodies"] == 3
    assert line["records"] > 0
    assert line["skips"].get("invalid_json") == 1
    assert line["alerts"] >= 2 and line["new"] == line["alerts"]
    assert line["suppressed"] >= 1  # the same admin turned the switch on twice
    assert line["notified"] >= 1 and line["failures"] == 0
    assert (line["partition"], line["sequence_from"], line["sequence_to"]) == ("3", 1200, 1202)
    assert (line["offset_from"], line["offset_to"]) == ("81920", "90112")
    assert line["enqueued_from"].startswith("2026-01-05T10:00:00")
    assert line["retry"] == 0 and line["max_retries"] == 5
    posts = len(httpserver.log)
    assert posts == line["notified"]

    # At-least-once delivery: the same batch again stores nothing new and notifies nobody.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        detect(event_batch(bodies), Context())
    [again] = batch_lines(caplog, "batch")
    assert again["new"] == 0 and again["duplicates"] == line["alerts"] and again["notified"] == 0
    assert len(httpserver.log) == posts


def _deadletters(env: dict[str, str]) -> list[str]:
    container = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]).get_container_client(
        env["DEADLETTER_CONTAINER"])
    return [blob.name for blob in container.list_blobs()] if container.exists() else []


@pytest.mark.integration
def test_a_storage_outage_is_retried_and_the_batch_is_not_lost(
        monkeypatch: pytest.MonkeyPatch, outage_azurite: Any, table_prefix: str, blob_azurite: str,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    env = state_env(outage_azurite.connection_string, table_prefix, AzureWebJobsStorage=blob_azurite,
                    DEADLETTER_CONTAINER=f"dl{table_prefix.lower()}", EVENTHUB_NAME="m365-audit")
    module = load_app(monkeypatch, **env)
    detect = functions(module)["detect"].get_user_function()
    module.RUNTIME.pipeline()  # warm, as after an earlier batch
    outage_azurite.stop()

    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(Exception, match="unavailable"):
        detect(event_batch([SAMPLE.read_bytes()]), Context(retry_count=0))
    [failed] = batch_lines(caplog, "batch_failed")
    assert failed["partition"] == "3" and failed["sequence_from"] == 1200
    assert "retries" in failed["next_step"]
    assert _deadletters(env) == []  # not the last try: the host will run it again

    outage_azurite.start()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        detect(event_batch([SAMPLE.read_bytes()]), Context(retry_count=1))
    [line] = batch_lines(caplog, "batch")
    assert line["new"] >= 2 and line["retry"] == 1


@pytest.mark.integration
def test_the_last_retry_dead_letters_the_batch_and_still_fails(
        monkeypatch: pytest.MonkeyPatch, table_prefix: str, blob_azurite: str,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    # Table Storage that never answers: even building the pipeline fails.
    env = state_env(connection_string(free_port()), table_prefix, AzureWebJobsStorage=blob_azurite,
                    DEADLETTER_CONTAINER=f"dl{table_prefix.lower()}", EVENTHUB_NAME="m365-audit")
    module = load_app(monkeypatch, **env)
    detect = functions(module)["detect"].get_user_function()
    bodies = [SAMPLE.read_bytes(), b"\x1f\x8b not really gzip"]

    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(Exception, match="unavailable"):
        detect(event_batch(bodies, partition="7", first_sequence=55), Context(**LAST_TRY))
    [line] = batch_lines(caplog, "batch_dead_lettered")
    assert (line["partition"], line["sequence_from"], line["sequence_to"]) == ("7", 55, 56)
    assert line["deadletter"] == "partition-7/00000000000000000055-00000000000000000056.json"
    assert line["next_step"].endswith(line["deadletter"])
    assert _deadletters(env) == [line["deadletter"]]

    stored = DeadLetterStore.open(module.RUNTIME.settings).read(line["deadletter"])
    assert stored.bodies == bodies  # byte for byte, gzip-looking garbage included
    assert stored.origin.partition_id == "7" and stored.origin.last_offset == "86016"
    assert "StorageUnavailable" in stored.error and stored.attempts == 6


@pytest.mark.integration
def test_when_the_dead_letter_fails_too_the_log_says_where_the_batch_is(
        monkeypatch: pytest.MonkeyPatch, table_prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    nowhere = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;" \
              f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
    env = state_env(connection_string(free_port()), table_prefix, AzureWebJobsStorage=nowhere,
                    EVENTHUB_NAME="m365-audit")
    module = load_app(monkeypatch, **env)
    detect = functions(module)["detect"].get_user_function()
    with caplog.at_level(logging.INFO), pytest.raises(Exception, match="unavailable"):
        detect(event_batch([b"{}"], partition="1", first_sequence=9), Context(**LAST_TRY))
    [line] = batch_lines(caplog, "batch_lost_from_hub_checkpoint")
    assert line["deadletter"] is None
    assert "partition 1, sequence numbers 9-9, offsets 81920-81920" in line["next_step"]
    assert any("dead letter NOT written" in r.getMessage() for r in caplog.records)


@pytest.mark.integration
def test_the_timers_run_the_outbox_and_the_retention_cleanup(
        monkeypatch: pytest.MonkeyPatch, live_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    module = load_app(monkeypatch, **live_env)
    registered = functions(module)
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({
        "Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": False}), "json"),
        trigger_metadata={})
    with caplog.at_level(logging.INFO, logger=LOGGER):
        registered["redeliver"].get_user_function()(timer)
        registered["cleanup"].get_user_function()(timer)
    [outbox] = batch_lines(caplog, "redeliver")
    assert outbox["due"] == 0 and outbox["notified"] == 0
    [cleanup] = batch_lines(caplog, "cleanup")
    assert all(isinstance(count, int) for count in cleanup.values())
