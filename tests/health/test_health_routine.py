"""The health routine end to end: batches counted into Azurite, the timer's checks, notices sent once to
real HTTP servers, the heartbeat, and the summary the command prints."""

from __future__ import annotations

import io
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pytest_httpserver import HTTPServer

from detection.devserver import connection_string, free_port
from detection.handler import build_pipeline
from detection.health.routine import health_summary, record_batch, run_health
from detection.health.store import HealthStore
from detection.health.summary import heartbeat_notice, render_text
from detection.notify.base import HealthMessage, destinations_from_settings
from detection.notify.cardcheck import check_cards
from detection.notify.teams import teams_payload
from detection.rules import load_rules
from detection.settings import BUNDLED_RULES_DIR, Settings

pytestmark = pytest.mark.integration

TENANT = "4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f"
SEED = "bbd1a775-8267-41fa-9232-20e5582596ac"
RULES = load_rules(BUNDLED_RULES_DIR).rules
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def body(*operations: tuple[str, str]) -> bytes:
    return orjson.dumps([{"Id": f"{i}", "CreationTime": "2026-12-01T08:00:00", "Operation": op,
                          "Workload": workload, "OrganizationId": TENANT.upper(), "RecordType": 25}
                         for i, (workload, op) in enumerate(operations)])


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    httpserver = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    httpserver.expect_request("/teams", method="POST").respond_with_data("", status=202)
    httpserver.expect_request("/slack", method="POST").respond_with_data("ok", status=200)
    httpserver.start()
    yield httpserver
    httpserver.stop()


def settings_for(env: dict[str, str], server: HTTPServer, **extra: str) -> Settings:
    return Settings.from_env({**env, "TEAMS_WEBHOOK_URL": server.url_for("/teams"),
                              "SLACK_WEBHOOK_URL": server.url_for("/slack"), **extra})


def posts(server: HTTPServer, path: str) -> list[dict]:
    return [orjson.loads(request.get_data()) for request, _ in server.log if request.path == path]


class Harness:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings, self.clock = settings, clock
        self.store = HealthStore.open(settings)
        self.destinations = destinations_from_settings(settings, clock=clock, sleep=lambda s: None)

    def batch(self, *bodies: bytes) -> int:
        return record_batch(self.store, list(bodies), settings=self.settings, clock=self.clock, rules=RULES)

    def timer(self) -> dict:
        return run_health(self.store, settings=self.settings, clock=self.clock,
                          destinations=self.destinations, rules=RULES)


def test_silence_and_recovery_reach_every_destination_exactly_once(state_settings_env, server):
    clock = Clock(T0)
    h = Harness(settings_for(state_settings_env, server, SILENCE_THRESHOLD="1h"), clock)
    for _ in range(13):                              # two hours of Exchange traffic, every 10 minutes
        assert h.batch(body(("Exchange", "MailItemsAccessed"), ("Exchange", "Send"))) == 1
        clock.now += timedelta(minutes=10)
    last = clock.now - timedelta(minutes=10)
    for minutes in (20, 50, 70, 80, 120, 240):      # the timer, while the source is quiet
        clock.now = last + timedelta(minutes=minutes)
        h.timer()
    assert len(posts(server, "/teams")) == 1 and len(posts(server, "/slack")) == 1
    slack = posts(server, "/slack")[0]
    assert "1 source silent" in slack["text"]
    assert "No Exchange records have arrived for 1 hour" in orjson.dumps(slack).decode()

    h.batch(body(("Exchange", "MailItemsAccessed")))  # the source comes back
    for minutes in (5, 15, 25):
        clock.now += timedelta(minutes=minutes)
        h.timer()
    teams = posts(server, "/teams")
    assert len(teams) == 2 and len(posts(server, "/slack")) == 2
    assert "1 source recovered" in orjson.dumps(teams[1]).decode()
    assert "Exchange records are arriving again" in orjson.dumps(teams[1]).decode()
    # Both notices are valid Adaptive Cards, checked the way every alert card is.
    if shutil.which("node"):
        result = check_cards(teams)
        assert result.ok and result.failures == (), result.lines


def test_two_timer_runs_at_once_send_each_notice_once(state_settings_env, server):
    clock = Clock(T0)
    settings = settings_for(state_settings_env, server, SILENCE_THRESHOLD="1h")
    first = Harness(settings, clock)
    for _ in range(8):
        first.batch(body(("SharePoint", "FileAccessed")))
        clock.now += timedelta(minutes=15)
    clock.now += timedelta(hours=2)
    second = Harness(settings, clock)
    runs = [threading.Thread(target=h.timer) for h in (first, second, first, second)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert len(posts(server, "/teams")) == 1 and len(posts(server, "/slack")) == 1


def test_the_heartbeat_is_sent_once_a_day_and_is_a_valid_card(state_settings_env, server):
    clock = Clock(T0)
    h = Harness(settings_for(state_settings_env, server, HEARTBEAT_ENABLED="true"), clock)
    h.batch(body(("MicrosoftTeams", "TeamsSessionStarted"), ("Exchange", "Send")))
    h.timer()                                        # the first run owes yesterday's heartbeat
    clock.now = T0.replace(hour=23)
    h.timer()                                        # the same day: nothing more
    clock.now = datetime(2026, 12, 2, 0, 10, tzinfo=UTC)
    h.timer()
    h.timer()
    teams = posts(server, "/teams")
    assert len(teams) == 2 and len(posts(server, "/slack")) == 2
    second = orjson.dumps(teams[1]).decode()
    assert "Detection heartbeat for 2026-12-01" in second
    facts = orjson.dumps(teams[1]["attachments"][0]["content"]).decode()
    assert '"Records"' in facts or "Records" in facts
    if shutil.which("node"):
        result = check_cards(teams)
        assert result.ok and result.failures == (), result.lines


def test_a_month_of_teams_admin_action_only_reports_the_seed_rule_as_blind(state_settings_env, server):
    clock = Clock(T0)
    h = Harness(settings_for(state_settings_env, server, DRIFT_WINDOW="3d", SILENCE_THRESHOLD="2d"), clock)
    for day in range(5):
        for hour in (2, 10, 18):
            clock.now = T0 + timedelta(days=day, hours=hour)
            ops = [("MicrosoftTeams", "TeamsSessionStarted"), ("Exchange", "Send")]
            if day == 0:
                ops.append(("MicrosoftTeams", "TeamsTenantSettingChanged"))
            else:
                ops.append(("MicrosoftTeams", "TeamsAdminAction"))
            h.batch(body(*ops))
    h.timer()
    summary = health_summary(h.store, settings=h.settings, now=clock.now, rules=RULES, days=1)
    seed = [f for f in summary["drift"] if f["rule_id"] == SEED]
    assert len(seed) == 1
    assert seed[0]["message"].startswith(
        "Teams admin changes are arriving as TeamsAdminAction, but TeamsTenantSettingChanged has not been "
        "seen for 3 days")
    assert all(f["rule_id"] != "6ab3e929-b15e-476b-910f-c7b99449b230" for f in summary["drift"])
    assert summary["silence"] == []
    assert "may be blind" in render_text(summary)
    # Drift is told once as a health notice, never as an alert.
    slack = posts(server, "/slack")
    assert len(slack) == 1 and "may be blind" in orjson.dumps(slack[0]).decode()
    h.timer()
    assert len(posts(server, "/slack")) == 1


def test_counting_never_fails_a_batch_when_storage_is_down(state_settings_env, server):
    dead = {**state_settings_env, "ALERTS_STORAGE_CONNECTION": connection_string(free_port())}
    settings = settings_for(dead, server)
    store = HealthStore.open(settings, create_tables=False, attempts=1, connect_timeout=1)
    assert record_batch(store, [body(("Exchange", "Send"))], settings=settings, clock=Clock(T0),
                        rules=RULES) == 0


def test_health_message_summaries_render_as_cards(state_settings_env, server):
    """The notice shapes the routine sends, rendered by the Teams format and checked by the SDK."""
    clock = Clock(T0)
    h = Harness(settings_for(state_settings_env, server, SILENCE_THRESHOLD="1h"), clock)
    h.batch(body(("Exchange", "Send")))
    clock.now += timedelta(hours=2)
    h.batch(body(("Exchange", "Send")))
    summary = health_summary(h.store, settings=h.settings, now=clock.now + timedelta(hours=3), rules=RULES)
    card = teams_payload(HealthMessage(heartbeat_notice(summary)))
    assert card["attachments"][0]["content"]["type"] == "AdaptiveCard"
    if shutil.which("node"):
        assert check_cards([card]).ok


def test_the_batch_handler_counts_every_batch_once_per_tenant(state_settings_env):
    clock = Clock(T0)
    settings = Settings.from_env(state_settings_env)
    pipeline = build_pipeline(settings, clock=clock, console_stream=io.StringIO())
    seed_match = {"Id": "seed-1", "CreationTime": "2026-12-01T07:59:00",
                  "Operation": "TeamsTenantSettingChanged", "Workload": "MicrosoftTeams",
                  "OrganizationId": TENANT, "RecordType": 25,
                  "UserId": "admin@contoso.onmicrosoft.com",
                  "Name": "Allow sideloading and interaction of custom apps", "OldValue": "False",
                  "NewValue": "True"}
    report = pipeline.handle([body(("Exchange", "Send"), ("Exchange", "Send")), orjson.dumps(seed_match),
                              b"not json"])
    assert report.alerts == 1
    counted = HealthStore.open(settings).days(T0.date(), T0.date())
    assert counted[TENANT].count("records") == 3
    assert counted[TENANT].workloads["Exchange"].count == 2
    assert counted[TENANT].families["TeamsTenantSettingChanged"].count == 1
    assert counted[TENANT].count("alerts") == 1 and counted[TENANT].count("delivered") == 1
    # A body that is not JSON belongs to no tenant: its skip is the pipeline's, and only that is.
    assert counted["_pipeline"].counts == {"skipped.invalid_json": 1}
    # The hub delivers at least once: the same batch again arrives again, but is no new alert.
    again = pipeline.handle([orjson.dumps(seed_match)])
    assert again.alerts == 1 and again.duplicates == 1
    counted = HealthStore.open(settings).days(T0.date(), T0.date())
    assert counted[TENANT].count("records") == 4  # records are counted per arrival
    assert counted[TENANT].count("alerts") == 1 and counted[TENANT].count("delivered") == 1
    pipeline.close()


OTHER_TENANT = "9f8e7d6c-5b4a-4321-8fed-cba987654321"


def seed_record(record_id: str, tenant: str, user: str) -> dict:
    return {"Id": record_id, "CreationTime": "2026-12-01T07:59:00", "Operation": "TeamsTenantSettingChanged",
            "Workload": "MicrosoftTeams", "OrganizationId": tenant, "RecordType": 25, "UserId": user,
            "Name": "Allow sideloading and interaction of custom apps", "OldValue": "False",
            "NewValue": "True"}


def test_two_tenants_in_one_batch_have_their_outcomes_counted_each_under_its_own_id(state_settings_env):
    clock = Clock(T0)
    settings = Settings.from_env({**state_settings_env, "HEARTBEAT_ENABLED": "true"})
    pipeline = build_pipeline(settings, clock=clock, console_stream=io.StringIO())
    batch = [orjson.dumps([seed_record("a-1", TENANT, "admin@contoso.onmicrosoft.com"),
                           seed_record("b-1", OTHER_TENANT.upper(), "admin@fabrikam.onmicrosoft.com"),
                           seed_record("b-2", OTHER_TENANT, "ops@fabrikam.onmicrosoft.com")])]
    report = pipeline.handle(batch)
    assert report.new == 3 and report.notified == 3  # the console destination, once per alert
    store = HealthStore.open(settings)
    counted = store.days(T0.date(), T0.date())
    assert set(counted) == {TENANT, OTHER_TENANT}  # no outcome left on the pipeline pseudo-tenant
    assert [counted[t].count("records") for t in (TENANT, OTHER_TENANT)] == [1, 2]
    assert [counted[t].count("alerts") for t in (TENANT, OTHER_TENANT)] == [1, 2]
    assert [counted[t].count("delivered") for t in (TENANT, OTHER_TENANT)] == [1, 2]
    # Bounded: one counters row per tenant for the whole batch, records and outcomes together.
    assert len(list(store.tables.query("health", "kind eq @k", {"k": "counters"}))) == 2

    pipeline.handle(batch)  # delivered again by the hub
    counted = store.days(T0.date(), T0.date())
    assert [counted[t].count("records") for t in (TENANT, OTHER_TENANT)] == [2, 4]
    assert [counted[t].count("alerts") for t in (TENANT, OTHER_TENANT)] == [1, 2]
    assert [counted[t].count("delivered") for t in (TENANT, OTHER_TENANT)] == [1, 2]

    summary = health_summary(store, settings=settings, now=clock.now, rules=RULES, days=0)
    assert summary["totals"]["alerts"] == 3 and summary["totals"]["delivered"] == 3
    by_id = {t["tenant_id"]: t for t in summary["tenants"]}
    assert (by_id[OTHER_TENANT]["alerts"], by_id[OTHER_TENANT]["delivered"]) == (2, 2)
    text = render_text(summary)
    assert (f"tenant {OTHER_TENANT}: 4 records (MicrosoftTeams 4)\n"
            "  alerts 2  suppressed 0  excepted 0  overflow 0  delivered 2  delivery failures 0") in text
    notice = heartbeat_notice(summary)
    assert notice["Tenant 1"] == (f"[{OTHER_TENANT}] records 4, alerts 2, suppressed 0, delivered 2, "
                                  "delivery failures 0")
    assert notice["Tenant 2"].startswith(f"[{TENANT}] records 2, alerts 1,")
    pipeline.close()


def test_deliveries_made_by_the_redelivery_timer_are_counted(state_settings_env):
    clock = Clock(T0)
    with HTTPServer(host="127.0.0.1", port=0) as teams:
        settings = Settings.from_env({**state_settings_env, "TEAMS_WEBHOOK_URL": teams.url_for("/teams")})
        destinations = destinations_from_settings(settings, clock=clock, sleep=lambda s: None)
        pipeline = build_pipeline(settings, clock=clock, destinations=destinations)
        teams.expect_request("/teams").respond_with_data("busy", status=503)
        seed = next(t.record for r in RULES if r.rule_id == SEED for t in r.tests if t.expect_alert)
        report = pipeline.handle([orjson.dumps(dict(seed, OrganizationId=OTHER_TENANT.upper()))])
        assert report.alerts == 1 and report.notified == 0
        teams.clear()
        teams.expect_request("/teams").respond_with_data("", status=202)
        clock.now = T0 + timedelta(minutes=10)
        assert pipeline.redeliver().notified == 1
        counted = HealthStore.open(settings).days(T0.date(), T0.date())
        assert counted[OTHER_TENANT].count("delivered") == 1  # under the alert's tenant
        assert counted[OTHER_TENANT].count("delivery_failed") == report.delivery_failures == 1
        assert "_pipeline" not in counted
        pipeline.close()
