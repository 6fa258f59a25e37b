"""The Table Storage adapter and the entity layout against the real service (Azurite)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from detection.devserver import connection_string, free_port
from detection.settings import Settings, SettingsError
from detection.state import codec, keys
from detection.state.store import ALERTS, GROUPS, AlertStore
from detection.state.tables import (
    EtagMismatch,
    StorageUnavailable,
    Tables,
    TransactionFailed,
    credential_options,
    resolve_connection,
)
from tests.state.statekit import T0, make_alert

pytestmark = pytest.mark.integration

HOSTILE = ["a/b\\c#d?e", "tab\there\nnewline\x00nul\x7fdel\x85nel", "x" * 2048, "é" * 700 + "😀" * 300,
           "", " ", "t-looks-like-a-key", "h-" + "0" * 64, "'; drop table alerts; --", "..", "~owed"]


@pytest.fixture
def store(state_settings_env: dict[str, str]) -> AlertStore:
    return AlertStore.open(Settings.from_env(state_settings_env))


# ---- where the tables are ----

def test_connection_settings_are_resolved_in_the_documented_order() -> None:
    every = {"ALERTS_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
             "ALERTS_STORAGE_ENDPOINT": "https://acct.table.core.windows.net",
             "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=host;AccountKey=a2V5",
             "AzureWebJobsStorage__tableServiceUri": "https://hostid.table.core.windows.net",
             "AzureWebJobsStorage__accountName": "hostname1"}
    order = ["ALERTS_STORAGE_CONNECTION", "ALERTS_STORAGE_ENDPOINT", "AzureWebJobsStorage",
             "AzureWebJobsStorage__tableServiceUri", "AzureWebJobsStorage__accountName"]
    found = []
    env = dict(every)
    for name in order:
        found.append(resolve_connection(Settings.from_env(env)))
        del env[name]
    assert [c.source for c in found] == order
    assert [c.kind for c in found] == ["connection_string", "endpoint", "connection_string", "endpoint",
                                       "endpoint"]
    assert found[4].value == "https://hostname1.table.core.windows.net"
    # What is logged names the host, never the key.
    assert "a2V5" not in found[2].describe() and "host" in found[2].describe()
    with pytest.raises(SettingsError, match="ALERTS_STORAGE_CONNECTION"):
        resolve_connection(Settings.from_env({}))
    with pytest.raises(SettingsError, match="ALERTS_STORAGE_ENDPOINT"):
        resolve_connection(Settings.from_env({"ALERTS_STORAGE_ENDPOINT": "http://acct.table.core.windows.net"}))
    with pytest.raises(SettingsError, match="accountName"):
        resolve_connection(Settings.from_env({"AzureWebJobsStorage__accountName": "Not/An-Account"}))


def test_identity_endpoint_uses_the_user_assigned_identity() -> None:
    from azure.identity import DefaultAzureCredential

    settings = Settings.from_env({"ALERTS_STORAGE_ENDPOINT": "https://acct.table.core.windows.net",
                                  "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555"})
    assert credential_options(settings) == {
        "managed_identity_client_id": "11111111-2222-3333-4444-555555555555"}
    assert credential_options(Settings.from_env({})) == {}
    tables = Tables.open(settings, {ALERTS: "alerts"})
    assert isinstance(tables._service.credential, DefaultAzureCredential)
    assert tables._service.url.startswith("https://acct.table.core.windows.net")


def test_tables_are_created_when_missing(state_settings_env: dict[str, str]) -> None:
    settings = Settings.from_env(state_settings_env)
    first = AlertStore.open(settings)
    AlertStore.open(settings)  # a second instance finds them there
    names = {t.name for t in first.tables._service.list_tables()}
    assert {settings.alerts_table, settings.groups_table} <= names


# ---- keys and bounded entities ----

@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_tenant_and_user_strings_make_valid_distinct_keys(store: AlertStore, hostile: str) -> None:
    alert = make_alert("rec/with#odd?chars\\", tenant=hostile, user=hostile)
    entity = store.alert_entity(alert, status="muted", when=T0, now=T0)
    for key in (entity["PartitionKey"], entity["RowKey"]):
        assert len(key.encode("utf-8")) <= 1024
        assert not set(key) & set("/\\#?") and all(0x20 <= ord(c) < 0x7F for c in key)
    assert store.create(entity) is not None
    stored = store.get(store_ref(entity))
    assert stored is not None
    assert stored.entity["tenant_id"] == codec.clip(hostile)
    assert stored.entity["user_id"] == codec.clip(hostile)
    back = codec.alert_from_entity(stored.entity)
    assert back.raw["OrganizationId"] == hostile


def test_keys_never_collide_between_readable_and_digested_forms() -> None:
    made = {keys.tenant_key(t) for t in HOSTILE}
    assert len(made) == len(HOSTILE)
    digest_of_x = keys.tenant_key("a/b")
    assert keys.tenant_key(digest_of_x) != digest_of_x  # a tenant named like a digest key stays apart


def store_ref(entity: dict) -> object:
    from detection.state.store import ref_of

    return ref_of(entity)


def test_an_oversized_record_is_truncated_with_a_marker_not_refused(store: AlertStore) -> None:
    big = {"Id": "big-1", "CreationTime": "2026-11-30T14:00:00", "Blob": "A" * 3_000_000,
           "Many": {f"k{i}": "v" * 50 for i in range(20_000)}, "Name": "Allow sideloading",
           "Wide": "😀" * 200_000}
    alert = make_alert("big-1", raw=big)
    entity = store.alert_entity(alert, status="new", when=T0, now=T0)
    assert codec.entity_size(entity) <= codec.MAX_ENTITY_BYTES
    assert len(entity) - 2 <= codec.MAX_PROPERTIES
    assert entity["raw_truncated"] is True and entity["ecs_truncated"] is False
    assert store.create(entity) is not None
    back = codec.alert_from_entity(store.get(store_ref(entity)).entity)  # type: ignore[union-attr]
    assert back.raw["_truncated"] is True
    assert back.raw.get("Id") == "big-1" or "_preview" in back.raw  # short fields survive when they can
    assert back.ecs == alert.ecs


def test_an_alert_round_trips_with_its_steps_and_every_field_at_its_largest_stays_bounded(
        store: AlertStore) -> None:
    import dataclasses

    alert = dataclasses.replace(make_alert("steps-1"), investigation=("Ask the admin.", "Check sign-ins."),
                                response=("Undo the change.",))
    entity = store.alert_entity(alert, status="muted", when=T0, now=T0)
    store.create(entity)
    back = codec.alert_from_entity(store.get(store_ref(entity)).entity)  # type: ignore[union-attr]
    assert back == alert
    huge = "😀" * 100_000
    worst = dataclasses.replace(
        alert, **{name: huge for name in codec.ALERT_FIELDS}, threat=({"tactic": {"name": huge}},),
        investigation=(huge,) * 50, response=(huge,) * 50,
        raw={"Blob": huge * 5, "Many": list(range(200_000))}, ecs={"Blob": huge * 5})
    entity = store.alert_entity(worst, status="muted", when=T0, now=T0)
    assert codec.entity_size(entity) <= codec.MAX_ENTITY_BYTES
    assert store.create(entity) is not None
    back = codec.alert_from_entity(store.get(store_ref(entity)).entity)  # type: ignore[union-attr]
    assert len(back.investigation) == codec.MAX_STEPS and "[truncated" in back.investigation[0]


def test_a_document_with_a_long_field_keeps_its_shape() -> None:
    text, truncated = codec.bound_document({"Id": "x", "Huge": "b" * 500_000, "Small": "kept"}, 100_000)
    assert truncated and codec.utf16_units(text) <= 100_000
    import json

    doc = json.loads(text)
    assert doc["Id"] == "x" and doc["Small"] == "kept" and doc["_truncated"] is True
    assert "[truncated" in doc["Huge"]


def test_split_never_breaks_a_character_and_respects_utf16_size() -> None:
    text = "a😀" * 40_000
    parts = codec.split_units(text, 30_000)
    assert "".join(parts) == text
    assert all(codec.utf16_units(p) <= 30_000 for p in parts)


# ---- the adapter's contract ----

def test_query_values_with_quotes_are_parameters_not_text(store: AlertStore) -> None:
    tricky = "O'Brien\" or RowKey ne '"
    alert = make_alert("quote-1", user=tricky)
    other = make_alert("quote-2", user="someone else")
    for a in (alert, other):
        store.create(store.alert_entity(a, status="muted", when=T0, now=T0))
    found = list(store.tables.query(ALERTS, "user_id eq @user", {"user": tricky}))
    assert [f.entity["record_id"] for f in found] == ["quote-1"]
    with pytest.raises(ValueError, match="stand alone"):
        list(store.tables.query(ALERTS, "(user_id eq @user)", {"user": tricky}))
    with pytest.raises(ValueError, match="no parameter"):
        list(store.tables.query(ALERTS, "user_id eq @user", {}))


def test_int64_and_datetimes_round_trip(store: AlertStore) -> None:
    when = datetime(2026, 11, 30, 14, 0, 1, 123000, tzinfo=UTC)
    store.tables.create(GROUPS, {"PartitionKey": "p", "RowKey": "r", "big": 2**40, "small": 7, "when": when,
                                 "flag": True})
    got = store.tables.get(GROUPS, "p", "r")
    assert got is not None
    assert got.entity["big"] == 2**40 and isinstance(got.entity["big"], int)
    assert got.entity["small"] == 7 and got.entity["flag"] is True
    assert got.entity["when"] == when and type(got.entity["when"]) is datetime


def test_first_writer_wins_and_etags_guard_updates(store: AlertStore) -> None:
    tables = store.tables
    assert tables.create(GROUPS, {"PartitionKey": "p", "RowKey": "x", "n": 1}) is not None
    assert tables.create(GROUPS, {"PartitionKey": "p", "RowKey": "x", "n": 99}) is None
    first = tables.get(GROUPS, "p", "x")
    assert first is not None and first.entity["n"] == 1
    tables.update(GROUPS, {"PartitionKey": "p", "RowKey": "x", "n": 2}, first.etag)
    with pytest.raises(EtagMismatch):
        tables.update(GROUPS, {"PartitionKey": "p", "RowKey": "x", "n": 3}, first.etag)
    assert tables.get(GROUPS, "p", "x").entity["n"] == 2  # type: ignore[union-attr]
    assert not tables.delete(GROUPS, "p", "x", first.etag)
    assert tables.delete(GROUPS, "p", "x")
    assert tables.get(GROUPS, "p", "x") is None
    assert tables.delete(GROUPS, "p", "x")  # already gone: nothing to refuse


def test_a_transaction_applies_all_or_nothing(store: AlertStore) -> None:
    tables = store.tables
    tables.create(GROUPS, {"PartitionKey": "p", "RowKey": "counter", "n": 0})
    counter = tables.get(GROUPS, "p", "counter")
    assert counter is not None

    def count(n: int) -> dict:
        return {"PartitionKey": "p", "RowKey": "counter", "n": n}

    tables.transact(GROUPS, [("create", {"PartitionKey": "p", "RowKey": "m1"}, None),
                             ("update", count(1), counter.etag)])
    with pytest.raises(TransactionFailed) as caught:  # stale ETag: the member row is not created either
        tables.transact(GROUPS, [("create", {"PartitionKey": "p", "RowKey": "m2"}, None),
                                 ("update", count(2), counter.etag)])
    assert caught.value.index == 1 and caught.value.code == "UpdateConditionNotSatisfied"
    assert tables.get(GROUPS, "p", "m2") is None
    fresh = tables.get(GROUPS, "p", "counter")
    with pytest.raises(TransactionFailed) as caught:  # existing member row: the counter is not touched
        tables.transact(GROUPS, [("create", {"PartitionKey": "p", "RowKey": "m1"}, None),
                                 ("update", count(5), fresh.etag)])  # type: ignore[union-attr]
    assert caught.value.index == 0 and caught.value.code == "EntityAlreadyExists"
    assert tables.get(GROUPS, "p", "counter").entity["n"] == 1  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="one partition"):
        tables.transact(GROUPS, [("create", {"PartitionKey": "a", "RowKey": "1"}, None),
                                 ("create", {"PartitionKey": "b", "RowKey": "1"}, None)])


def test_queries_page_through_large_results(store: AlertStore) -> None:
    tables = store.tables
    for chunk in range(0, 250, 50):
        tables.transact(GROUPS, [("create", {"PartitionKey": "many", "RowKey": f"{i:04d}"}, None)
                                 for i in range(chunk, chunk + 50)])
    rows = list(tables.query(GROUPS, "PartitionKey eq @pk", {"pk": "many"}, page_size=40))
    assert [r.entity["RowKey"] for r in rows] == [f"{i:04d}" for i in range(250)]
    assert len(list(tables.query(GROUPS, "PartitionKey eq @pk", {"pk": "many"}, page_size=40,
                                 limit=55))) == 55
    assert len(list(tables.query(GROUPS, "PartitionKey eq @pk", {"pk": "many"}, page_size=40,
                                 max_pages=2))) == 80


def test_unreachable_storage_is_retried_then_raised_with_bounded_attempts() -> None:
    settings = Settings.from_env({"ALERTS_STORAGE_CONNECTION": connection_string(free_port())})
    calls: list[str] = []
    sleeps: list[float] = []
    tables = Tables.open(settings, {ALERTS: "alerts"}, attempts=4, base_delay=0.01, sleep=sleeps.append,
                         on_call=calls.append, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        tables.get(ALERTS, "p", "r")
    assert time.monotonic() - started < 10
    assert calls == ["read in alerts"] * 4
    assert len(sleeps) == 3 and sleeps[0] <= sleeps[2] * 2  # backing off
    assert "127.0.0.1" in str(caught.value) and "AccountKey" not in str(caught.value)


def test_storage_errors_never_carry_a_sas_signature() -> None:
    sas = (f"TableEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;"
           "SharedAccessSignature=sv=2024-08-04&ss=t&srt=sco&sp=rwdlacu&sig=TOPSECRETSIGNATURE")
    tables = Tables.open(Settings.from_env({"ALERTS_STORAGE_CONNECTION": sas}), {ALERTS: "alerts"},
                         attempts=2, base_delay=0.01)
    with pytest.raises(StorageUnavailable) as caught:
        list(tables.query(ALERTS, "PartitionKey eq @pk", {"pk": "x"}))
    error = caught.value
    assert "TOPSECRET" not in str(error)
    assert error.__cause__ is None and error.__suppress_context__  # the SDK's text is not chained


def test_retention_cleanup_deletes_expired_rows_in_bounded_work(store: AlertStore) -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    for i in range(12):
        alert = make_alert(f"old-{i}")
        entity = store.alert_entity(alert, status="muted", when=T0, now=now - timedelta(days=40))
        store.create(entity)
    kept = store.alert_entity(make_alert("fresh"), status="muted", when=T0, now=now - timedelta(days=1))
    store.create(kept)
    first = store.cleanup(now, limit=5)
    assert first[store.tables.names[ALERTS]] == 5
    second = store.cleanup(now, limit=100)
    assert second[store.tables.names[ALERTS]] == 7
    left = [s.entity["record_id"] for s in store.list()]
    assert left == ["fresh"]
