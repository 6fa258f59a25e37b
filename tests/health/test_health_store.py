"""Health counters and state in Table Storage (Azurite): no lost increments under concurrent batches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from detection.health.checks import Mark
from detection.health.counters import ALERTS, RECORDS, Counters, Seen
from detection.health.notices import HealthState
from detection.health.store import HealthStore
from detection.settings import Settings
from detection.state.tables import EtagMismatch

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
TENANT = "4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f"
OTHER = "9f8e7d6c-5b4a-4321-8fed-cba987654321"
ROOT = Path(__file__).resolve().parents[2]


def delta(tenant: str, records: int, when: datetime, workload: str = "Exchange") -> Counters:
    return Counters(tenant, {RECORDS: records}, {workload: Seen(records, when, when)})


@pytest.fixture
def store(state_settings_env: dict[str, str]) -> HealthStore:
    return HealthStore.open(Settings.from_env(state_settings_env))


def test_counters_are_merged_per_day_and_added_up_over_shards(store: HealthStore):
    store.shards = 3
    for hour in range(6):
        when = T0 + timedelta(hours=hour)
        assert store.add({TENANT: delta(TENANT, 10, when), OTHER: delta(OTHER, 1, when, "SharePoint")},
                         when) == 2
    store.add({TENANT: delta(TENANT, 5, T0 + timedelta(days=1))}, T0 + timedelta(days=1))
    today = store.days(T0.date(), T0.date())
    assert today[TENANT].count(RECORDS) == 60 and today[OTHER].count(RECORDS) == 6
    assert today[TENANT].workloads["Exchange"] == Seen(60, T0, T0 + timedelta(hours=5))
    both = store.days(T0.date(), T0.date() + timedelta(days=1))
    assert both[TENANT].count(RECORDS) == 65
    assert store.delete_before(T0.date() + timedelta(days=1)) >= 2
    assert store.days(T0.date(), T0.date()) == {}
    assert store.days(T0.date(), date(2026, 12, 9))[TENANT].count(RECORDS) == 5


def test_an_empty_delta_writes_nothing(store: HealthStore):
    assert store.add({TENANT: Counters(TENANT)}, T0) == 0
    assert store.days(T0.date(), T0.date()) == {}


def test_a_writer_that_loses_the_race_merges_again_onto_the_newer_row(state_settings_env):
    """Deterministic interleaving: B writes between A's read and A's write; A's ETag fails, A re-reads."""
    settings = Settings.from_env(state_settings_env)
    other = HealthStore.open(settings)
    other.shards = 1
    raced = []

    def between_read_and_write(operation: str) -> None:
        if operation.startswith("update") and not raced:
            raced.append(operation)
            other.add({TENANT: delta(TENANT, 7, T0)}, T0)

    store = HealthStore.open(settings, on_call=between_read_and_write)
    store.shards = 1
    store.add({TENANT: delta(TENANT, 1, T0)}, T0)      # creates the row
    store.add({TENANT: delta(TENANT, 2, T0)}, T0)      # read, (B adds 7), update fails, re-read, update
    assert raced
    assert store.days(T0.date(), T0.date())[TENANT].count(RECORDS) == 10


WORKER = textwrap.dedent("""
    import sys
    from datetime import datetime, UTC
    from detection.health.counters import Counters, Seen
    from detection.health.store import HealthStore
    from detection.settings import Settings
    store = HealthStore.open(Settings.from_env(), create_tables=False)
    store.shards = int(sys.argv[2])
    update, lost = store.tables.update, []
    def counting_update(*args, **kwargs):
        try:
            return update(*args, **kwargs)
        except Exception:
            lost.append(1)
            raise
    store.tables.update = counting_update
    when = datetime(2026, 12, 1, 10, tzinfo=UTC)
    for i in range(int(sys.argv[1])):
        store.add({"t1": Counters("t1", {"records": 3, "alerts": 1}, {"Exchange": Seen(3, when, when)}),
                   "t2": Counters("t2", {"records": 1})}, when)
    print(len(lost))
""")


@pytest.mark.parametrize("shards", [1, 4])
def test_concurrent_batches_in_several_processes_lose_no_increment(state_settings_env, shards):
    settings = Settings.from_env(state_settings_env)
    HealthStore.open(settings)  # creates the table once, before the writers start
    env = {**os.environ, **state_settings_env, "PYTHONPATH": str(ROOT)}
    processes, batches = 4, 25
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(batches), str(shards)], env=env,
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(processes)]
    races = 0
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err.decode()[-2000:]
        races += int(out.split()[-1])
    print(f"{races} writes lost a race and merged again")
    totals = HealthStore.open(settings).days(T0.date(), T0.date())
    assert totals["t1"].count(RECORDS) == 3 * processes * batches
    assert totals["t1"].count(ALERTS) == processes * batches
    assert totals["t1"].workloads["Exchange"].count == 3 * processes * batches
    assert totals["t2"].count(RECORDS) == processes * batches


def test_the_state_is_written_only_over_the_version_read(store: HealthStore):
    state, etag = store.state()
    assert state == HealthState() and etag is None
    mark = Mark("silence", "silence|t|Exchange", "t", "Exchange", T0, T0 + timedelta(days=1))
    marked = HealthState(marks={mark.key: mark}, heartbeat_day="2026-12-01")
    first = store.save_state(marked, None)
    with pytest.raises(EtagMismatch):
        store.save_state(HealthState(), None)          # a second run creating it too loses
    second = store.save_state(HealthState(heartbeat_day="2026-12-02"), first)
    with pytest.raises(EtagMismatch):
        store.save_state(HealthState(), first)         # a stale version loses
    state, etag = store.state()
    assert state.heartbeat_day == "2026-12-02" and etag == second
