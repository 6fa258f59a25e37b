"""Dead letters: the format and naming (pure), the blob adapter on Azurite, and the CLI that replays.

The story end to end: a batch the function could not handle is written by `DeadLetterStore.write`
(as detection.hosting does on the last retry), `deadletter list/show` find it, and `deadletter replay`
runs it through the function's handler into Table Storage, deleting the blob once handled.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detection.cli import main
from detection.deadletter import (
    BatchOrigin,
    DeadLetterError,
    DeadLetterStore,
    blob_name,
    decode,
    encode,
    resolve_location,
    write_best_effort,
)
from detection.devserver import free_port
from detection.settings import Settings, SettingsError
from tests.blob_azurite import blob_azurite  # noqa: F401 - fixture
from tests.conftest import state_env

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "management-activity-general.json"
FAILED_AT = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)
ORIGIN = BatchOrigin(partition_id="2", first_sequence=41, last_sequence=44, first_offset="8192",
                     last_offset="20480", event_hub="m365-audit", consumer_group="m365-detect")


# ---- format and names ----

def test_a_batch_round_trips_byte_for_byte() -> None:
    bodies = [b'{"Id": "1"}', b"\x1f\x8b\x08\x00 binary \xff\x00", b""]
    letter = decode("x.json", encode(bodies, ORIGIN, error="StorageUnavailable: down", failed_at=FAILED_AT,
                                     attempts=6))
    assert letter.bodies == bodies
    assert letter.origin == ORIGIN
    assert (letter.error, letter.failed_at, letter.attempts) == (
        "StorageUnavailable: down", "2026-01-05T10:30:00+00:00", 6)


def test_the_name_is_the_batch_position_so_rewriting_a_batch_overwrites_it() -> None:
    assert blob_name([b"a"], ORIGIN) == "partition-2/00000000000000000041-00000000000000000044.json"
    assert blob_name([b"other bodies"], ORIGIN) == blob_name([b"a"], ORIGIN)
    # Sequence numbers sort as text too, so a listing is in hub order.
    later = BatchOrigin(partition_id="2", first_sequence=100, last_sequence=101)
    assert sorted([blob_name([], later), blob_name([], ORIGIN)])[0] == blob_name([], ORIGIN)


def test_without_a_position_the_name_is_the_content_digest() -> None:
    unknown = BatchOrigin()
    assert blob_name([b"a", b"b"], unknown) == blob_name([b"a", b"b"], unknown)
    assert blob_name([b"a", b"b"], unknown) != blob_name([b"ab"], unknown)  # body boundaries count
    assert blob_name([b"a"], unknown).startswith("unknown-partition/")


def test_the_origin_describes_itself_for_an_operator() -> None:
    assert ORIGIN.describe() == "partition 2, sequence numbers 41-44, offsets 8192-20480"
    assert BatchOrigin().describe() == "partition unknown"


@pytest.mark.parametrize(("data", "problem"), [
    (b"not json", "not a dead-letter document"),
    (b'{"format": "something else"}', "not a dead-letter document"),
    (b'{"format": "m365-detect.deadletter", "version": 99, "bodies": []}',
     "unsupported dead-letter version 99"),
    (b'{"format": "m365-detect.deadletter", "version": 1, "bodies": ["%%%"]}', "a body is not valid base64"),
    (b'{"format": "m365-detect.deadletter", "version": 1, "bodies": "x"}', "'bodies' must be a list"),
])
def test_a_damaged_blob_is_a_clear_error(data: bytes, problem: str) -> None:
    with pytest.raises(DeadLetterError, match=f"^bad.json: {problem}"):
        decode("bad.json", data)


def test_the_error_kept_with_a_batch_is_bounded() -> None:
    letter = decode("x", encode([], ORIGIN, error="e" * 10_000, failed_at=FAILED_AT, attempts=None))
    assert len(letter.error) == 2000


# ---- where the container lives ----

def test_location_prefers_the_hosts_identity_based_blob_endpoint() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage__blobServiceUri": "https://st1.blob.core.windows.net/",
                                  "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    location = resolve_location(settings)
    assert (location.kind, location.source) == ("endpoint", "AzureWebJobsStorage__blobServiceUri")
    assert "managed identity" in location.describe()


def test_location_never_derives_a_public_host_from_a_table_only_connection_string() -> None:
    table_only = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                  "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;")
    with pytest.raises(SettingsError, match="AzureWebJobsStorage__blobServiceUri"):
        resolve_location(Settings.from_env({"ALERTS_STORAGE_CONNECTION": table_only}))
    development = Settings.from_env({"ALERTS_STORAGE_CONNECTION": "UseDevelopmentStorage=true"})
    location = resolve_location(development)
    assert location.source == "ALERTS_STORAGE_CONNECTION"


def test_location_description_shows_no_key() -> None:
    connection = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0;"
                  "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
    described = resolve_location(Settings.from_env({"AzureWebJobsStorage": connection})).describe()
    assert "c2VjcmV0" not in described and "127.0.0.1:10000" in described


# ---- the adapter and the CLI on Azurite ----

@pytest.fixture
def env(azurite_connection: str, table_prefix: str, blob_azurite: str) -> dict[str, str]:  # noqa: F811
    return state_env(azurite_connection, table_prefix, AzureWebJobsStorage=blob_azurite,
                     DEADLETTER_CONTAINER=f"dl{table_prefix.lower()}")


@pytest.fixture
def settings_file(tmp_path: Path, env: dict[str, str]) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": env}))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


@pytest.mark.integration
def test_store_writes_lists_reads_and_deletes(env: dict[str, str]) -> None:
    store = DeadLetterStore.open(Settings.from_env(env))
    assert list(store.list()) == []  # the container does not exist yet: nothing dead-lettered
    name = store.write([b"one", b"two"], ORIGIN, error="boom", failed_at=FAILED_AT, attempts=6)
    again = store.write([b"one", b"two"], ORIGIN, error="boom again", failed_at=FAILED_AT, attempts=6)
    assert again == name
    [info] = list(store.list())
    assert info.name == name and info.size > 0
    assert store.read(name).error == "boom again"
    store.delete(name)
    assert list(store.list()) == []
    with pytest.raises(DeadLetterError, match="no such dead letter"):
        store.read(name)


@pytest.mark.integration
def test_replay_runs_the_batch_through_the_handler_and_deletes_it(
        env: dict[str, str], settings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = DeadLetterStore.open(Settings.from_env(env))
    name = store.write([SAMPLE.read_bytes()], ORIGIN, error="StorageUnavailable", failed_at=FAILED_AT,
                       attempts=6)

    code, listed, _ = run_cli(capsys, "deadletter", "list", "--settings", str(settings_file))
    assert code == 0 and [entry["name"] for entry in listed] == [name]

    code, [shown], _ = run_cli(capsys, "deadletter", "show", name, "--bodies", str(tmp_path / "bodies"),
                               "--settings", str(settings_file))
    assert code == 0 and shown["bodies"] == 1 and shown["where"] == ORIGIN.describe()
    assert (tmp_path / "bodies" / "body-0000.bin").read_bytes() == SAMPLE.read_bytes()

    code, [replayed], _ = run_cli(capsys, "deadletter", "replay", "--all", "--settings", str(settings_file))
    assert code == 0
    assert replayed["name"] == name and replayed["replayed"] and replayed["deleted"]
    assert replayed["new"] >= 2 and replayed["records"] > 0
    assert list(store.list()) == []

    # The same batch again (say it was also replayed from a file): stored once, notified once.
    store.write([SAMPLE.read_bytes()], ORIGIN, error="again", failed_at=FAILED_AT, attempts=6)
    code, [second], _ = run_cli(capsys, "deadletter", "replay", name, "--keep",
                                "--settings", str(settings_file))
    assert code == 0 and second["new"] == 0 and second["duplicates"] == replayed["alerts"]
    assert second["deleted"] is False and [i.name for i in store.list()] == [name]


@pytest.mark.integration
def test_replay_usage_and_unknown_names(settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "deadletter", "replay", "--settings", str(settings_file))
    assert code == 2 and "--all" in err
    code, _, err = run_cli(capsys, "deadletter", "replay", "partition-9/none.json", "--settings",
                           str(settings_file))
    assert code == 2 and "partition-9/none.json: no such dead letter" in err


def test_the_cli_names_the_missing_storage_setting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {}}))
    code, _, err = run_cli(capsys, "deadletter", "list", "--settings", str(path))
    assert code == 2 and "AzureWebJobsStorage__blobServiceUri" in err


# ---- a blob service that is down or refuses ----

SIGNATURE = "c2lnbmF0dXJlLW9mLWEtc2Fz"


def _sas_settings_file(tmp_path: Path, blob_endpoint: str) -> Path:
    """Host storage given as a SAS connection string: the signature must never reach output or logs."""
    connection = f"BlobEndpoint={blob_endpoint};SharedAccessSignature=sv=2022-11-02&sp=rl&sig={SIGNATURE}"
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"AzureWebJobsStorage": connection}}))
    return path


@pytest.mark.parametrize("action", [["list"], ["show", "partition-1/x.json"], ["replay", "--all"]])
def test_an_unreachable_container_exits_1_with_one_line_and_no_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], action: list[str]) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    path = _sas_settings_file(tmp_path, endpoint)
    code, _, err = run_cli(capsys, "deadletter", *action, "--settings", str(path))
    assert code == 1
    operation = {"list": "list", "show": "read", "replay": "list"}[action[0]]
    assert err.strip() == (f"error: dead letters: blob storage at {endpoint} (connection string from "
                           f"AzureWebJobsStorage), container deadletter unavailable: {operation} failed "
                           "(ServiceRequestError)")
    assert SIGNATURE not in err


@pytest.mark.integration
def test_a_refusing_blob_service_is_named_with_its_status(
        blob_azurite: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    wrong_key = re.sub(r"AccountKey=[^;]+", f"AccountKey={base64.b64encode(b'not the key').decode()}",
                       blob_azurite)
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"AzureWebJobsStorage": wrong_key}}))
    code, _, err = run_cli(capsys, "deadletter", "list", "--settings", str(path))
    assert code == 1 and "refused list: HTTP 403" in err
    assert "bm90IHRoZSBrZXk" not in err


def test_a_failed_dead_letter_write_is_logged_in_our_words(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    sas = f"BlobEndpoint={endpoint};SharedAccessSignature=sv=2022-11-02&sig={SIGNATURE}"
    settings = Settings.from_env({"AzureWebJobsStorage": sas})
    with caplog.at_level(logging.ERROR, logger="detection.deadletter"):
        name = write_best_effort(lambda: DeadLetterStore.open(settings), [b"{}"], ORIGIN, error="boom",
                                 failed_at=FAILED_AT, attempts=6)
    assert name is None
    [record] = caplog.records
    assert record.getMessage() == (
        f"dead letter NOT written for {ORIGIN.describe()} (1 bodies): blob storage at {endpoint} "
        "(connection string from AzureWebJobsStorage), container deadletter unavailable: write failed "
        "(ServiceRequestError)")
