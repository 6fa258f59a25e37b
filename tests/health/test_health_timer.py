"""The health timer as the Functions host indexes and calls it."""

from __future__ import annotations

import json
import logging

import pytest
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from tests.conftest import state_env
from tests.test_function_app import functions, load_app

pytestmark = pytest.mark.integration


def test_the_health_timer_runs_on_the_schedule_setting(monkeypatch):
    app = load_app(monkeypatch, EVENTHUB_NAME="m365-audit",
                   ALERTS_STORAGE_CONNECTION="UseDevelopmentStorage=true", HEALTH_SCHEDULE="0 7 * * * *")
    health = functions(app)["health"]
    [binding] = json.loads(health.get_function_json())["bindings"]
    assert binding["type"] == "timerTrigger" and binding["schedule"] == "0 7 * * * *"
    assert binding["runOnStartup"] is False and binding["useMonitor"] is True
    assert health.get_settings_dict("retry_policy") is None  # the next tick is the retry


def test_the_health_timer_checks_and_logs_what_it_did(monkeypatch, azurite_connection, table_prefix, caplog):
    # The blob service (dead letters) is checked at start-up but not used by this timer.
    app = load_app(monkeypatch, EVENTHUB_NAME="m365-audit", AzureWebJobsStorage="UseDevelopmentStorage=true",
                   **state_env(azurite_connection, table_prefix))
    timer = TimerRequestConverter.decode(meta.Datum(json.dumps({
        "Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": False}), "json"),
        trigger_metadata={})
    with caplog.at_level(logging.INFO, logger="detection.health.routine"):
        functions(app)["health"].get_user_function()(timer)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("health ")]
    report = json.loads(line.removeprefix("health "))
    assert report["silent"] == 0 and report["blind"] == 0 and report["sent"] == 0
