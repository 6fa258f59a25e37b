"""`replay`, `alerts`, `redeliver` and `cleanup` as a user runs them, against Azurite."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer

from detection.cli import main
from detection.devserver import connection_string, free_port
from tests.state.statekit import T0, record

pytestmark = pytest.mark.integration


def write_settings(path: Path, values: dict[str, str]) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python",
                                                                  **values}}))
    return path


def lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def local_settings(tmp_path: Path, state_settings_env: dict[str, str]) -> Path:
    return write_settings(tmp_path / "local.settings.json", state_settings_env)


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    """Two files: a JSON array body, and NDJSON with one body per line (one a duplicate)."""
    now = T0
    first = tmp_path / "batch.json"
    first.write_bytes(orjson.dumps([record("cli-1", at=now), record("cli-2", at=now + timedelta(minutes=3)),
                                    record("cli-3", user="b@contoso.onmicrosoft.com", at=now)]))
    second = tmp_path / "more.ndjson"
    second.write_bytes(b"\n".join(orjson.dumps(r) for r in [
        record("cli-4", user="c@contoso.onmicrosoft.com", at=now), record("cli-1", at=now)]) + b"\n")
    return [str(first), str(second)]


def test_replay_stores_notifies_and_is_idempotent(local_settings: Path, inputs: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", *inputs, "--settings", str(local_settings), "--batch-size", "2"]) == 0
    out, err = capsys.readouterr()
    (stats,) = lines(out)
    assert (stats["bodies"], stats["records"], stats["new"], stats["duplicates"]) == (3, 5, 4, 1)
    assert (stats["suppressed"], stats["notified"]) == (1, 3)
    assert err.count("(no webhook configured") == 3  # console notifications on stderr, stdout stays JSON
    assert main(["replay", *inputs, "--settings", str(local_settings)]) == 0
    out, err = capsys.readouterr()
    (again,) = lines(out)
    assert (again["new"], again["notified"]) == (0, 0) and "no webhook configured" not in err


def test_alerts_list_and_show(local_settings: Path, inputs: list[str],
                              capsys: pytest.CaptureFixture[str]) -> None:
    main(["replay", *inputs, "--settings", str(local_settings)])
    capsys.readouterr()
    assert main(["alerts", "list", "--json", "--settings", str(local_settings)]) == 0
    listed = lines(capsys.readouterr().out)
    assert sorted(a["record_id"] for a in listed) == ["cli-1", "cli-2", "cli-3", "cli-4"]
    assert main(["alerts", "list", "--status", "suppressed", "--json",
                 "--settings", str(local_settings)]) == 0
    suppressed = lines(capsys.readouterr().out)
    assert [a["record_id"] for a in suppressed] == ["cli-2"]
    rule = suppressed[0]["rule_id"]
    assert main(["alerts", "list", "--rule", rule, "--since", "2027-01-01T00:00Z", "--json",
                 "--settings", str(local_settings)]) == 0
    assert lines(capsys.readouterr().out) == []
    assert main(["alerts", "list", "--since", "3650d", "--settings", str(local_settings)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["event_time", "status", "severity"] and len(table) == 5

    head = next(a for a in listed if a["record_id"] == "cli-1")
    assert main(["alerts", "show", head["alert_id"], "--settings", str(local_settings)]) == 0
    (shown,) = lines(capsys.readouterr().out)
    assert shown["status"] == "notified" and shown["ledger"]["console"]["state"] == "delivered"
    assert shown["suppression_window"]["suppressed"] == 1
    assert shown["raw"]["Id"] == "cli-1" and shown["ecs"]["event"]["id"] == "cli-1"

    assert main(["alerts", "show", "0" * 32, "--settings", str(local_settings)]) == 2
    assert "no alert" in capsys.readouterr().err


def test_alerts_below_every_threshold_are_listed_as_such_and_show_the_thresholds(
        tmp_path: Path, state_settings_env: dict[str, str], inputs: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    with HTTPServer(host="127.0.0.1", port=0) as teams:
        teams.expect_request("/teams", method="POST").respond_with_data("", status=202)
        only_critical = write_settings(tmp_path / "critical.json", {
            **state_settings_env, "TEAMS_WEBHOOK_URL": teams.url_for("/teams"),
            "TEAMS_MIN_SEVERITY": "critical"})
        assert main(["replay", *inputs, "--settings", str(only_critical)]) == 0
        (stats,) = lines(capsys.readouterr().out)
        assert (stats["new"], stats["notified"], stats["owed"]) == (4, 0, 0)
        assert teams.log == []  # a medium alert never goes to a critical-only channel
    assert main(["alerts", "list", "--status", "new", "--json", "--settings", str(only_critical)]) == 0
    assert lines(capsys.readouterr().out) == []  # nothing reads as "not yet notified"
    assert main(["alerts", "list", "--status", "below_threshold", "--json",
                 "--settings", str(only_critical)]) == 0
    listed = lines(capsys.readouterr().out)
    assert sorted(a["record_id"] for a in listed) == ["cli-1", "cli-3", "cli-4"]  # cli-2 is suppressed
    assert main(["alerts", "show", listed[0]["alert_id"], "--settings", str(only_critical)]) == 0
    (shown,) = lines(capsys.readouterr().out)
    assert (shown["status"], shown["severity"], shown["ledger"]) == ("below_threshold", "medium", {})
    assert shown["below_min_severity"] == {"teams": "critical"}


def test_alerts_list_limit_keeps_the_newest_events(local_settings: Path, state_settings_env: dict[str, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from detection.settings import Settings
    from detection.state.store import AlertStore
    from tests.state.statekit import make_alert

    store = AlertStore.open(Settings.from_env(state_settings_env))
    alerts = [make_alert(f"order-{i}", at=T0 + timedelta(hours=i)) for i in range(6)]
    for alert in alerts:
        when = T0 + timedelta(hours=int(alert.record_id.split("-")[1]))
        store.create(store.alert_entity(alert, status="muted", when=when, now=T0))
    in_key_order = sorted(alerts, key=lambda a: a.alert_id)
    assert {a.record_id for a in in_key_order[:2]} != {"order-5", "order-4"}  # the table's order is not time
    assert main(["alerts", "list", "--limit", "2", "--json", "--settings", str(local_settings)]) == 0
    assert [a["record_id"] for a in lines(capsys.readouterr().out)] == ["order-5", "order-4"]
    assert main(["alerts", "list", "--limit", "0", "--settings", str(local_settings)]) == 2


def test_redeliver_and_cleanup_print_their_counts(local_settings: Path, inputs: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    main(["replay", *inputs, "--settings", str(local_settings)])
    capsys.readouterr()
    assert main(["redeliver", "--settings", str(local_settings)]) == 0
    assert lines(capsys.readouterr().out)[0]["due"] == 0
    assert main(["cleanup", "--settings", str(local_settings)]) == 0
    assert set(lines(capsys.readouterr().out)[0].values()) == {0}


def test_bad_settings_exit_2_naming_the_setting(
        tmp_path: Path, state_settings_env: dict[str, str], inputs: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_settings(tmp_path / "bad.json", {**state_settings_env, "MAINTENANCE_WINDOWS": "Sat/Sun"})
    assert main(["replay", *inputs, "--settings", str(bad)]) == 2
    assert "MAINTENANCE_WINDOWS" in capsys.readouterr().err


def test_unreachable_storage_exits_1_without_a_traceback(tmp_path: Path, inputs: list[str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    nobody = connection_string(free_port())
    down = write_settings(tmp_path / "down.json", {"ALERTS_STORAGE_CONNECTION": nobody})
    assert main(["alerts", "list", "--settings", str(down)]) == 1
    err = capsys.readouterr().err
    assert "unavailable" in err and "Traceback" not in err and "AccountKey" not in err
