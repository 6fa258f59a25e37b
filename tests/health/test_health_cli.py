"""`python -m detection health`: the summary from stored counters, the timer run on demand, exit codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from detection.cli import main
from detection.devserver import connection_string, free_port
from detection.health.routine import record_batch
from detection.health.store import HealthStore
from detection.rules import load_rules
from detection.settings import BUNDLED_RULES_DIR, Settings

pytestmark = pytest.mark.integration

TENANT = "4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f"
STATE_SETTINGS = ("ALERTS_STORAGE_CONNECTION", "ALERTS_STORAGE_ENDPOINT", "AzureWebJobsStorage",
                  "AzureWebJobsStorage__tableServiceUri", "AzureWebJobsStorage__accountName",
                  "TEAMS_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "WEBHOOK_URL", "HEARTBEAT_ENABLED")


@pytest.fixture
def env(monkeypatch, state_settings_env):
    for name in STATE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in state_settings_env.items():
        monkeypatch.setenv(name, value)
    return state_settings_env


def counted(env, *, hours_ago: float) -> None:
    now = datetime.now(UTC)
    body = orjson.dumps([{"Id": str(i), "Operation": op, "Workload": workload, "OrganizationId": TENANT,
                          "CreationTime": "2026-12-01T00:00:00", "RecordType": 25}
                         for i, (workload, op) in enumerate([("Exchange", "Send"),
                                                             ("MicrosoftTeams", "TeamsAdminAction")])])
    settings = Settings.from_env(env)
    for when in (now - timedelta(hours=hours_ago + 30), now - timedelta(hours=hours_ago)):
        record_batch(HealthStore.open(settings), [body], settings=settings, clock=lambda when=when: when,
                     rules=load_rules(BUNDLED_RULES_DIR).rules)


def test_the_summary_as_text_and_json(env, capsys):
    counted(env, hours_ago=1)
    assert main(["health"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("health: ok")
    assert f"tenant {TENANT}: 4 records (Exchange 2, MicrosoftTeams 2)" in text
    assert "Teams admin shapes: TeamsAdminAction 2" in text
    assert "silent sources: none" in text
    assert main(["health", "--json", "--days", "3"]) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["totals"]["records"] == 4 and summary["status"] == "ok"


def test_a_silent_source_shows_and_the_timer_run_notifies_it_once(env, capsys):
    counted(env, hours_ago=26)
    assert main(["health"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("health: attention") and "silent sources: 2" in out
    assert "No Exchange records have arrived for 1 day" in out
    assert main(["health", "--notify"]) == 0
    first = capsys.readouterr()
    assert orjson.loads(first.out)["sent"] == 1          # the console destination, since no webhook is set
    assert "2 sources silent" in first.err
    assert main(["health", "--notify"]) == 0
    again = capsys.readouterr()
    assert orjson.loads(again.out)["sent"] == 0 and "silent" not in again.err


def test_storage_down_exits_1_and_no_storage_setting_exits_2(env, monkeypatch, capsys):
    monkeypatch.setenv("ALERTS_STORAGE_CONNECTION", connection_string(free_port()))
    assert main(["health"]) == 1
    assert "error:" in capsys.readouterr().err
    for name in STATE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert main(["health"]) == 2
    assert main(["health", "--days", "-1"]) == 2
