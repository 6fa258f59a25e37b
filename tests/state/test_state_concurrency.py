"""Eight processes replaying overlapping batches at once: one alert per record, one notification per
window head, exact suppression counts. Real processes (`python -m detection replay`), real Table
service (Azurite), real webhook receiver (pytest-httpserver)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer

from detection.settings import Settings
from detection.state import keys
from detection.state.store import GROUPS, AlertStore
from tests.state.statekit import T0, record

pytestmark = pytest.mark.integration

PROCESSES = 8
USERS = ["a", "b", "c", "d"]


def stream() -> tuple[list[dict[str, Any]], dict[tuple[str, int], int]]:
    """Records of four users over three one-hour windows, 1-4 per window, and how many per window."""
    records, per_window = [], {}
    for u, user in enumerate(USERS):
        for window in range(3):
            count = 1 + (u + window) % 4
            per_window[(user, window)] = count
            for n in range(count):
                at = T0 + timedelta(hours=window, minutes=7 * n + u)
                records.append(record(f"{user}-{window}-{n}", user=f"{user}@contoso.onmicrosoft.com", at=at))
    return records, per_window


def test_eight_processes_replaying_overlapping_batches(tmp_path: Path, state_settings_env: dict[str, str],
                                                       httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    records, per_window = stream()
    values = {**state_settings_env, "WEBHOOK_URL": httpserver.url_for("/hook")}
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"Values": values}))

    # Each process gets about two thirds of the stream in its own order; together they cover it all.
    chosen = []
    for i in range(PROCESSES):
        rng = random.Random(i)
        mine = [r for r in records if rng.random() < 0.65]
        rng.shuffle(mine)
        chosen.append(mine)
    covered = {r["Id"] for part in chosen for r in part}
    chosen[0] += [r for r in records if r["Id"] not in covered]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEAMS_", "SLACK_", "WEBHOOK_"))}
    procs = []
    for i, part in enumerate(chosen):
        path = tmp_path / f"part{i}.ndjson"
        path.write_bytes(b"\n".join(orjson.dumps(r) for r in part) + b"\n")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "detection", "replay", str(path), "--settings", str(settings_file),
             "--batch-size", "3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        reports.append(orjson.loads(out.splitlines()[-1]))

    store = AlertStore.open(Settings.from_env(state_settings_env))
    stored = {s.entity["record_id"]: s.entity for s in store.list()}
    # One alert per record, created by exactly one process.
    assert sorted(stored) == sorted(r["Id"] for r in records)
    assert sum(r["new"] for r in reports) == len(records)
    assert sum(r["new"] + r["duplicates"] for r in reports) == sum(len(p) for p in chosen)

    # One head per window, notified exactly once; every other alert of the window counted into it.
    heads = {k: e for k, e in stored.items() if e["role"] == "head"}
    assert len(heads) == len(per_window)
    assert {e["status"] for e in heads.values()} == {"notified"}
    members = [e for e in stored.values() if e["role"] == "member"]
    assert len(members) == len(records) - len(per_window)
    assert {e["status"] for e in members} == {"suppressed"}
    for (user, window), count in per_window.items():
        in_window = [e for k, e in stored.items() if k.startswith(f"{user}-{window}-")]
        (head,) = [e for e in in_window if e["role"] == "head"]
        assert {e["head_alert_id"] for e in in_window if e["role"] == "member"} <= {head["alert_id"]}
        row = store.window(head["group_series"], head["group_window"])
        assert row is not None and row["suppressed"] == count - 1, (user, window)

    posts = [orjson.loads(request.get_data()) for request, _ in httpserver.log]
    ids = Counter(p["id"] for p in posts)
    assert set(ids) == {e["alert_id"] for e in heads.values()}
    assert set(ids.values()) == {1}
    assert sum(r["notified"] for r in reports) == len(heads)

    # The counts the notifications carried add up to what each series reported, nothing lost or doubled.
    reported = Counter()
    for post in posts:
        reported[stored[post["alert"]["record_id"]]["group_series"]] += post["suppressed_count"]
    for user in USERS:
        series = next(e["group_series"] for k, e in stored.items() if k.startswith(f"{user}-"))
        row = store.tables.get(GROUPS, series, keys.SERIES_ROW)
        assert row is not None
        total = sum(c - 1 for (u, _), c in per_window.items() if u == user)
        assert row.entity["suppressed_total"] == total
        assert row.entity["reported_total"] == reported[series] <= total
