"""The batch handler and the outbox against a real Table service (Azurite).

Destinations here are small implementations of our own Destination interface that record what they
were sent (and answer as a test tells them); storage is always the real thing.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from typing import Any

import orjson
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from detection.handler import BatchReport, build_pipeline, handle_batch
from detection.notify.base import (
    AlertMessage,
    DeliveryFailedMessage,
    Outcome,
    OverflowMessage,
    destinations_from_settings,
)
from detection.notify.cardcheck import check_cards
from detection.settings import Settings, SettingsError
from detection.state import codec, lifecycle
from detection.state.delivery import HANDOFF, LEASE, Deliverer
from detection.state.outbox import redeliver
from detection.state.store import AlertStore, Ref
from detection.state.tables import StorageUnavailable
from tests.conftest import state_env
from tests.state.statekit import T0, TENANT, Clock, Recorder, body, record, seed_rule

pytestmark = pytest.mark.integration

ADMIN = "admin@contoso.onmicrosoft.com"


class Env:
    """One test's settings, store, clock, rules and two recording destinations."""

    def __init__(self, env: dict[str, str], **extra: str) -> None:
        self.settings = Settings.from_env({**env, **extra})
        self.policy = lifecycle.validate_settings(self.settings)
        self.store = AlertStore.open(self.settings)
        self.clock = Clock(T0 + timedelta(hours=2))
        self.rules = [seed_rule()]
        self.teams = Recorder("teams")
        self.slack = Recorder("slack")

    @property
    def destinations(self) -> list[Recorder]:
        return [self.teams, self.slack]

    def run(self, *bodies: bytes, rules: Any = None) -> BatchReport:
        return handle_batch(list(bodies), settings=self.settings, clock=self.clock, store=self.store,
                            destinations=self.destinations, rules=rules or self.rules)

    def deliverer(self) -> Deliverer:
        return Deliverer(self.store, self.destinations, clock=self.clock, max_age=self.policy.max_age)

    def alerts(self, **filters: Any) -> dict[str, dict[str, Any]]:
        return {s.entity["record_id"]: s.entity for s in self.store.list(**filters)}

    def owed_rows(self) -> list[dict[str, Any]]:
        return [s.entity for s in self.store.tables.query("alerts", "PartitionKey eq @pk", {"pk": "owed"})]


@pytest.fixture
def env(state_settings_env: dict[str, str]) -> Env:
    return Env(state_settings_env)


def users(n: int) -> list[dict[str, Any]]:
    return [record(f"rec-{i}", user=f"user{i}@contoso.onmicrosoft.com", at=T0 + timedelta(minutes=i))
            for i in range(n)]


# ---- idempotence ----

def test_replaying_a_batch_ten_times_makes_one_alert_and_one_notification_each(env: Env) -> None:
    batch = body(users(5))
    reports = [env.run(batch) for _ in range(10)]
    assert reports[0].new == 5 and reports[0].notified == 10 and reports[0].duplicates == 0
    for again in reports[1:]:
        assert (again.new, again.duplicates, again.notified, again.suppressed) == (0, 5, 0, 0)
    stored = env.alerts()
    assert sorted(stored) == [f"rec-{i}" for i in range(5)]
    assert {e["status"] for e in stored.values()} == {"notified"}
    for destination in env.destinations:
        assert sorted(Counter(destination.alert_ids()).values()) == [1] * 5
    assert env.owed_rows() == []  # nothing left for the outbox
    assert reports[0].to_dict()["records"] == 5 and reports[0].to_dict()["skips"] == {}


def test_notifications_carry_the_rules_steps_as_stored_with_the_alert(env: Env) -> None:
    env.run(body([record("steps-1")]))
    guide = seed_rule().guide
    assert guide.investigation and guide.response
    for destination in env.destinations:
        (sent,) = destination.of_type(AlertMessage)
        assert (sent.alert.investigation, sent.alert.response) == (guide.investigation, guide.response)
    # What the webhook receives and `alerts show` reads: the stored alert, steps included.
    stored = codec.alert_from_entity(env.alerts()["steps-1"])
    assert stored.to_dict()["investigation"] == list(guide.investigation)


def test_the_same_record_in_overlapping_batches_is_one_alert(env: Env) -> None:
    records = users(6)
    env.run(body(records[:4]))
    report = env.run(body(records[2:]))
    assert (report.new, report.duplicates) == (2, 2)
    assert len(env.alerts()) == 6
    assert sorted(Counter(env.teams.alert_ids()).values()) == [1] * 6


# ---- suppression ----

def test_later_alerts_of_a_window_are_counted_into_its_head(env: Env) -> None:
    same_user = [record(f"s-{m}", at=T0 + timedelta(minutes=m)) for m in (1, 10, 20, 59)]
    next_window = record("s-70", at=T0 + timedelta(minutes=70))
    report = env.run(body([*same_user, next_window]))
    assert (report.new, report.suppressed) == (5, 3)
    stored = env.alerts()
    head = stored["s-1"]
    assert head["status"] == "notified" and head["role"] == "head"
    assert [stored[f"s-{m}"]["status"] for m in (10, 20, 59)] == ["suppressed"] * 3
    assert {stored[f"s-{m}"]["head_alert_id"] for m in (10, 20, 59)} == {head["alert_id"]}
    window = env.store.window(head["group_series"], head["group_window"])
    assert window is not None and window["suppressed"] == 3
    sent = [(m.alert.record_id, m.suppressed_count) for m in env.teams.sent]
    assert sent == [("s-1", 0), ("s-70", 3)]  # the next notification says how many were suppressed


def test_a_record_five_days_late_joins_the_window_it_belongs_to(env: Env) -> None:
    env.clock.now = T0 + timedelta(minutes=30)
    env.run(body([record("on-time", at=T0 + timedelta(minutes=5))]))
    env.clock.advance(days=5)
    late = env.run(body([record("late", at=T0 + timedelta(minutes=40))]))
    assert late.suppressed == 1 and late.notified == 0
    stored = env.alerts()
    assert stored["late"]["status"] == "suppressed"
    assert stored["late"]["head_alert_id"] == stored["on-time"]["alert_id"]
    # A late record of a window nobody opened yet opens it and is notified at once.
    other = env.run(body([record("late-other-window", at=T0 - timedelta(hours=3))]))
    assert other.notified == 2 and env.alerts()["late-other-window"]["role"] == "head"
    assert [m.suppressed_count for m in env.teams.sent] == [0, 1]


def test_suppression_override_from_settings(state_settings_env: dict[str, str]) -> None:
    env = Env(state_settings_env, SUPPRESSION_OVERRIDES=(
        '{"bbd1a775-8267-41fa-9232-20e5582596ac": {"group_by": ["organization.id"], "window": "1d"}}'))
    report = env.run(body(users(4)))  # different users, one tenant, one day
    assert (report.new, report.suppressed, report.notified) == (4, 3, 2)


def test_missing_group_field_separate_never_suppresses(env: Env) -> None:
    no_user = [record(f"nouser-{i}", user="", at=T0 + timedelta(minutes=i)) for i in range(3)]
    for r in no_user:
        del r["UserId"]
    grouped = env.run(body(no_user))
    assert grouped.suppressed == 2  # "group": a missing value groups like any value
    separate = seed_rule(suppression=type(seed_rule().suppression)(
        group_by=("organization.id", "user.id"), window=timedelta(hours=1), missing="separate"))
    others = [{**r, "Id": r["Id"] + "-b"} for r in no_user]
    report = env.run(body(others), rules=[separate])
    assert (report.new, report.suppressed, report.notified) == (3, 0, 6)


# ---- exceptions, maintenance, overflow ----

def test_excepted_records_are_stored_counted_and_logged_never_notified(
        state_settings_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    env = Env(state_settings_env, EXCEPTIONS_KQL='user.id:"svc-teams@contoso.onmicrosoft.com"')
    caplog.set_level(logging.INFO, logger="detection.handler")
    records = [record("ex-1", user="svc-teams@contoso.onmicrosoft.com"), record("normal-1")]
    report = env.run(body(records))
    assert (report.excepted, report.new, report.notified) == (1, 2, 2)
    stored = env.alerts()
    assert stored["ex-1"]["status"] == "excepted"
    assert env.teams.alert_ids() == [stored["normal-1"]["alert_id"]]
    assert any("ex-1" in r.getMessage() and "excepted" in r.getMessage() for r in caplog.records)
    assert [e["record_id"] for e in env.alerts(status="excepted").values()] == ["ex-1"]


def test_alerts_in_a_maintenance_window_are_muted_and_listed(state_settings_env: dict[str, str]) -> None:
    env = Env(state_settings_env,
              MAINTENANCE_WINDOWS="2026-11-30T13:00Z/2026-11-30T14:30Z, Sat 22:00/Sun 04:00")
    inside = record("planned", at=T0 + timedelta(minutes=10))
    saturday = T0.replace(month=12, day=5, hour=23)
    assert saturday.weekday() == 5
    weekly = record("weekend", user="x@contoso.onmicrosoft.com", at=saturday)
    outside = record("unplanned", at=T0 + timedelta(minutes=45))
    report = env.run(body([inside, weekly, outside]))
    assert (report.muted, report.notified) == (2, 2)
    assert sorted(env.alerts(status="muted")) == ["planned", "weekend"]
    assert [m.alert.record_id for m in env.teams.sent] == ["unplanned"]


def test_alerts_beyond_max_signals_are_stored_and_summarised_once(env: Env) -> None:
    rules = [seed_rule(max_signals=3)]
    batch = body(users(8))
    report = env.run(batch, rules=rules)
    assert (report.new, report.overflow) == (8, 5)
    assert len(env.alerts(status="overflow")) == 5
    for destination in env.destinations:
        summaries = destination.of_type(OverflowMessage)
        assert len(summaries) == 1 and summaries[0].count == 5
        assert summaries[0].first_event_time < summaries[0].last_event_time
        assert len(destination.of_type(AlertMessage)) == 3
    # 3 alerts and the overflow summary, each to both destinations; all under the alerts' tenant.
    assert report.by_tenant == {TENANT: {"new": 8, "overflow": 5, "notified": 8}}
    again = env.run(batch, rules=rules)
    assert (again.new, again.notified) == (0, 0)
    assert len(env.teams.of_type(OverflowMessage)) == 1
    assert again.overflow == 5 and again.by_tenant == {}  # the batch still has them; this run stored none


def test_overflow_inside_a_maintenance_window_is_muted_not_summarised(
        state_settings_env: dict[str, str]) -> None:
    env = Env(state_settings_env, MAINTENANCE_WINDOWS="2026-11-30T14:05Z/2026-11-30T15:00Z")
    rules = [seed_rule(max_signals=3)]
    report = env.run(body(users(8)), rules=rules)  # rec-0..2 within max_signals, rec-3..7 past it
    assert (report.new, report.overflow, report.muted) == (8, 2, 3)
    assert sorted(env.alerts(status="overflow")) == ["rec-3", "rec-4"]
    assert sorted(env.alerts(status="muted")) == ["rec-5", "rec-6", "rec-7"]
    for destination in env.destinations:
        assert [m.count for m in destination.of_type(OverflowMessage)] == [2]
    # A planned bulk change wholly inside the window notifies nothing at all.
    bulk = [record(f"bulk-{i}", user=f"bulk{i}@contoso.onmicrosoft.com", at=T0 + timedelta(minutes=5 + i))
            for i in range(8)]
    quiet = env.run(body(bulk), rules=rules)
    assert (quiet.muted, quiet.overflow, quiet.notified) == (8, 0, 0)
    assert len(env.teams.sent) == len(env.slack.sent) == 3 + 1  # only the first batch's


def test_overlapping_batches_never_summarise_an_overflow_alert_twice(env: Env) -> None:
    rules = [seed_rule(max_signals=1)]
    records = users(6)
    env.run(body(records[:4]), rules=rules)  # rec-0 alert, rec-1..3 overflow
    env.run(body(records[2:]), rules=rules)  # rec-2 alert (already overflow), rec-3..5 overflow
    counts = [m.count for m in env.teams.of_type(OverflowMessage)]
    assert sum(counts) == len(env.alerts(status="overflow")) == 5
    assert counts == [3, 2]


# ---- severity thresholds ----

def test_an_alert_below_every_destinations_minimum_severity_is_below_threshold(env: Env) -> None:
    env.teams.min_severity, env.slack.min_severity = "high", "critical"  # the seed rule is medium
    report = env.run(body([record("quiet")]))
    assert (report.new, report.notified, report.owed) == (1, 0, 0)
    stored = env.alerts()["quiet"]
    assert stored["status"] == "below_threshold" and stored["role"] == "head"
    assert codec.loads(stored["ledger"], None) == {}
    assert codec.loads(stored["below_min_severity"], None) == {"teams": "high", "slack": "critical"}
    assert list(env.alerts(status="below_threshold")) == ["quiet"] and env.alerts(status="new") == {}
    env.clock.advance(days=1)
    assert redeliver(env.deliverer()).due == 0 and env.owed_rows() == []
    env.run(body([record("quiet")]))
    assert env.teams.sent == env.slack.sent == []
    assert env.alerts()["quiet"]["status"] == "below_threshold"


def test_an_alert_one_destination_takes_is_notified_and_names_the_one_that_did_not(env: Env) -> None:
    env.slack.min_severity = "high"
    env.run(body([record("half")]))
    stored = env.alerts()["half"]
    assert stored["status"] == "notified" and sorted(codec.loads(stored["ledger"], {})) == ["teams"]
    assert codec.loads(stored["below_min_severity"], None) == {"slack": "high"}
    assert len(env.teams.sent) == 1 and env.slack.sent == []


# ---- outcomes per tenant ----

OTHER_TENANT = "9f8e7d6c-5b4a-4321-8fed-cba987654321"
SERVICE = "svc-teams@contoso.onmicrosoft.com"


def test_the_report_splits_outcomes_by_tenant_and_a_redelivered_batch_adds_none(
        state_settings_env: dict[str, str]) -> None:
    env = Env(state_settings_env, EXCEPTIONS_KQL=f'user.id:"{SERVICE}"',
              MAINTENANCE_WINDOWS="2026-11-30T15:00Z/2026-11-30T16:00Z")
    ours = [record("a-head", at=T0 + timedelta(minutes=1)), record("a-member", at=T0 + timedelta(minutes=5)),
            record("a-excepted", user=SERVICE)]
    theirs = [record("b-1", tenant=OTHER_TENANT.upper()),
              record("b-muted", tenant=OTHER_TENANT, at=T0 + timedelta(minutes=70))]
    batch = body([*ours, *theirs])
    report = env.run(batch)
    assert (report.new, report.excepted, report.muted, report.suppressed, report.notified) == (5, 1, 1, 1, 4)
    assert report.by_tenant == {TENANT: {"new": 3, "excepted": 1, "suppressed": 1, "notified": 2},
                                OTHER_TENANT: {"new": 2, "muted": 1, "notified": 2}}
    plain = report.to_dict()
    assert orjson.loads(orjson.dumps(plain))["by_tenant"] == {
        OTHER_TENANT: {"muted": 1, "new": 2, "notified": 2},
        TENANT: {"excepted": 1, "new": 3, "notified": 2, "suppressed": 1}}

    env.clock.advance(minutes=5)
    again = env.run(batch)  # the hub delivers the same batch again
    assert (again.duplicates, again.excepted, again.muted, again.notified) == (5, 1, 1, 0)
    assert again.by_tenant == {} and again.to_dict()["by_tenant"] == {}

    total = BatchReport()
    for part in (report, again):
        total.add(part)
    assert total.new == 5 and total.duplicates == 5 and total.by_tenant == report.by_tenant


def test_the_outbox_counts_what_it_does_under_the_tenant_of_each_alert(env: Env) -> None:
    from detection.engine import detect
    from detection.handler import _persist
    from detection.state.lifecycle import plan_batch

    records = [record("o-1", at=T0 + timedelta(minutes=1)), record("o-2", at=T0 + timedelta(minutes=2)),
               record("o-3", tenant=OTHER_TENANT)]
    found = detect([body(records)], env.rules, env.settings)
    plan = plan_batch(found.alerts, [], [], rules={r.rule_id: r for r in env.rules}, overrides={},
                      windows=(), now=env.clock())
    for planned in plan.alerts:
        _persist(env.store, planned, env.clock())  # stored, then the instance died before deciding
    env.slack.answer = lambda message: (Outcome("retry", 503, "HTTP 503 from hooks.slack.com")
                                        if message.alert.tenant_id == OTHER_TENANT
                                        else Outcome("delivered", 200))
    env.clock.now += HANDOFF
    report = redeliver(env.deliverer())
    assert (report.notified, report.failures, report.suppressed) == (3, 1, 1)
    assert report.by_tenant == {TENANT: {"notified": 2, "suppressed": 1},
                                OTHER_TENANT: {"notified": 1, "failures": 1}}
    assert report.to_dict()["by_tenant"] == {OTHER_TENANT: {"failures": 1, "notified": 1},
                                             TENANT: {"notified": 2, "suppressed": 1}}


# ---- the outbox ----

def test_an_owed_destination_is_retried_with_growing_delays_and_sent_once(env: Env) -> None:
    answers = iter([Outcome("retry", 503, "HTTP 503 from hooks.slack.com"),
                    Outcome("retry", 429, "HTTP 429 from hooks.slack.com", retry_after=300)])
    env.slack.answer = lambda message: next(answers, Outcome("delivered", 200))
    report = env.run(body([record("owed-1")]))
    assert (report.notified, report.delivery_failures, report.owed) == (1, 1, 1)
    rows = env.owed_rows()
    assert len(rows) == 1
    first_due = rows[0]["next_attempt_at"]
    assert first_due > env.clock()
    assert redeliver(env.deliverer()).due == 0  # not yet
    env.clock.now = first_due
    second = redeliver(env.deliverer())
    assert (second.due, second.notified, second.failures) == (1, 0, 1)
    assert second.by_tenant == {TENANT: {"failures": 1}}
    entry = codec.loads(env.alerts()["owed-1"]["ledger"], {})["slack"]
    assert entry["attempts"] == 2 and entry["http"] == 429
    next_due = lifecycle.parse_time(entry["next"])
    assert next_due is not None and next_due - env.clock() >= timedelta(seconds=300)  # Retry-After honoured
    env.clock.now = next_due
    third = redeliver(env.deliverer())
    assert third.notified == 1 and third.still_owed == 0
    assert len(env.teams.sent) == 1 and len(env.slack.sent) == 3
    assert env.alerts()["owed-1"]["status"] == "notified"
    assert env.owed_rows() == []
    env.clock.advance(days=1)
    assert redeliver(env.deliverer()).due == 0
    env.run(body([record("owed-1")]))
    assert len(env.teams.sent) == 1 and len(env.slack.sent) == 3  # never again


def test_a_redelivered_batch_finishes_what_is_still_owed(env: Env) -> None:
    env.slack.answer = lambda message: Outcome("retry", None, "network error talking to hooks.slack.com")
    batch = body([record("again-1")])
    env.run(batch)
    env.slack.answer = lambda message: Outcome("delivered", 200)
    env.clock.advance(minutes=5)
    report = env.run(batch)
    assert (report.duplicates, report.notified) == (1, 1)
    assert len(env.teams.sent) == 1 and len(env.slack.sent) == 2
    assert env.alerts()["again-1"]["status"] == "notified"


def test_delivery_gives_up_at_max_age_and_tells_the_other_destinations(
        state_settings_env: dict[str, str]) -> None:
    env = Env(state_settings_env, DELIVERY_MAX_AGE="1h")
    env.slack.answer = lambda message: Outcome("retry", 503, "HTTP 503 from hooks.slack.com")
    env.run(body([record("doomed")]))
    for _ in range(30):
        env.clock.advance(minutes=10)
        redeliver(env.deliverer())
    stored = env.alerts()["doomed"]
    ledger = codec.loads(stored["ledger"], {})
    assert stored["status"] == "failed" and ledger["slack"]["state"] == "failed"
    assert ledger["slack"]["error"].startswith("gave up after 1h")
    assert ledger["teams"]["state"] == "delivered"
    assert list(env.alerts(status="failed")) == ["doomed"]  # stays listed
    notices = env.teams.of_type(DeliveryFailedMessage)
    assert len(notices) == 1 and notices[0].destination == "slack"
    assert notices[0].alert.record_id == "doomed"
    assert env.slack.of_type(DeliveryFailedMessage) == []
    attempts = len(env.slack.sent)
    env.clock.advance(days=1)
    redeliver(env.deliverer())
    assert len(env.slack.sent) == attempts and len(env.teams.of_type(DeliveryFailedMessage)) == 1
    assert env.owed_rows() == []


def test_a_permanent_failure_is_final_at_once(env: Env) -> None:
    gone = Outcome("failed", 410, "HTTP 410 from hooks.slack.com: channel_is_archived")
    env.slack.answer = lambda message: gone
    report = env.run(body([record("archived")]))
    assert report.delivery_failures == 1 and report.owed == 0
    assert env.alerts()["archived"]["status"] == "failed"
    assert len(env.teams.of_type(DeliveryFailedMessage)) == 1
    assert "410" in codec.loads(env.alerts()["archived"]["ledger"], {})["slack"]["error"]


def slack_answer(overflow: Response, alert: Response) -> Any:
    """A Slack webhook that answers overflow summaries one way and everything else another."""
    def answer(request: Request) -> Response:
        payload = orjson.loads(request.get_data())
        return overflow if " more alerts: " in payload["text"] else alert
    return answer


def cards(server: HTTPServer) -> list[dict[str, Any]]:
    return [orjson.loads(request.get_data()) for request, _ in server.log]


def title_of(envelope: dict[str, Any]) -> str:
    return envelope["attachments"][0]["content"]["body"][0]["items"][0]["inlines"][0]["text"]


def test_an_overflow_summary_slack_refuses_is_announced_to_teams_once(
        state_settings_env: dict[str, str]) -> None:
    with HTTPServer(host="127.0.0.1", port=0, threaded=True) as teams, \
            HTTPServer(host="127.0.0.1", port=0, threaded=True) as slack:
        teams.expect_request("/teams", method="POST").respond_with_data("", status=202)
        slack.expect_request("/slack", method="POST").respond_with_handler(slack_answer(
            overflow=Response("channel_is_archived", status=410), alert=Response("ok", status=200)))
        env = Env(state_settings_env, TEAMS_WEBHOOK_URL=teams.url_for("/teams"),
                  SLACK_WEBHOOK_URL=slack.url_for("/slack"))
        destinations = destinations_from_settings(env.settings, clock=env.clock, sleep=lambda s: None)
        rules = [seed_rule(max_signals=3)]
        batch = body(users(8))

        def run() -> BatchReport:
            return handle_batch([batch], settings=env.settings, clock=env.clock, store=env.store,
                                destinations=destinations, rules=rules)

        report = run()
        # 3 alerts to both, the summary to Teams; the failure notice is not one of the batch's sends.
        assert (report.new, report.overflow, report.notified, report.delivery_failures) == (8, 5, 7, 1)
        for _ in range(2):  # two timer runs, a day apart
            env.clock.advance(days=1)
            assert redeliver(Deliverer(env.store, destinations, clock=env.clock,
                                       max_age=env.policy.max_age)).notified == 0
        env.clock.advance(minutes=5)
        assert run().notified == 0  # and the hub delivers the batch again

        titles = [title_of(card) for card in cards(teams)]
        failure_cards = [c for c in cards(teams) if title_of(c).startswith("Overflow summary not delivered")]
        assert len(titles) == 3 + 1 + 1 and len(failure_cards) == 1
        assert titles[-1] == ("Overflow summary not delivered to slack: Microsoft 365 Teams Custom "
                              "Application Interaction Allowed")
        check = check_cards(failure_cards)  # Microsoft's Adaptive Cards SDK
        assert check.ok, check.lines
        body_of = failure_cards[0]["attachments"][0]["content"]["body"]
        rows = [row for row in body_of if row["type"] == "ColumnSet"]
        facts = dict(tuple(col["items"][0]["inlines"][0]["text"] for col in row["columns"]) for row in rows)
        assert facts["Alerts in the summary"] == "5" and facts["Destination"] == "slack"
        assert facts["Last error"] == "HTTP 410 from 127.0.0.1: channel_is_archived"
        assert slack.url_for("/slack") not in orjson.dumps(failure_cards).decode()  # the URL is the secret
        slack_texts = [payload["text"] for payload in cards(slack)]
        assert len(slack_texts) == 3 + 1 and sum(" more alerts: " in t for t in slack_texts) == 1
        assert not any("not delivered" in text for text in slack_texts)

        notices = [n.entity for n in env.store.list(kind="notice")]
        kinds = sorted(n["notice_kind"] for n in notices)
        assert kinds == ["delivery_failed", "overflow"]  # one of each, whatever ran twice
        (notice,) = [n for n in notices if n["notice_kind"] == "overflow"]
        ledger = codec.loads(notice["ledger"], {})
        assert notice["status"] == "failed"
        assert (ledger["slack"]["state"], ledger["slack"]["http"], ledger["teams"]["state"]) == (
            "failed", 410, "accepted")
        assert codec.loads(notice["failures_noticed"], []) == ["slack"]
        assert env.owed_rows() == []
        for destination in destinations:
            destination.close()


def test_an_overflow_summary_past_max_age_is_announced_to_the_other_destinations(
        state_settings_env: dict[str, str]) -> None:
    env = Env(state_settings_env, DELIVERY_MAX_AGE="1h")
    busy, ok = Outcome("retry", 503, "HTTP 503 from hooks.slack.com"), Outcome("delivered", 200)
    env.slack.answer = lambda message: busy if isinstance(message, OverflowMessage) else ok
    env.run(body(users(8)), rules=[seed_rule(max_signals=3)])
    for _ in range(30):
        env.clock.advance(minutes=10)
        redeliver(env.deliverer())
    (summary,) = env.teams.of_type(OverflowMessage)
    (failed,) = env.teams.of_type(DeliveryFailedMessage)
    assert failed.overflow == summary and failed.alert is None and failed.destination == "slack"
    assert failed.error.startswith("gave up after 1h: HTTP 503")
    assert env.slack.of_type(DeliveryFailedMessage) == []
    assert len(env.slack.of_type(OverflowMessage)) > 1  # retried until the maximum age
    assert env.owed_rows() == []
    assert len(env.alerts(status="overflow")) == 5  # the alerts themselves stay listed as overflow


def test_the_outbox_finishes_an_alert_whose_instance_died_before_deciding(env: Env) -> None:
    from detection.handler import _persist
    from detection.state.lifecycle import plan_batch

    alert_record = record("orphan")
    from detection.engine import detect

    found = detect([body([alert_record])], env.rules, env.settings)
    plan = plan_batch(found.alerts, [], [], rules={r.rule_id: r for r in env.rules}, overrides={},
                      windows=(), now=env.clock())
    _persist(env.store, plan.alerts[0], env.clock())  # stored, then the instance died
    assert env.alerts()["orphan"]["role"] == "undecided" and len(env.owed_rows()) == 1
    assert redeliver(env.deliverer()).due == 0  # left to the instance for a moment
    env.clock.now += HANDOFF
    report = redeliver(env.deliverer())
    assert report.notified == 2
    assert env.alerts()["orphan"]["status"] == "notified" and env.owed_rows() == []


def test_the_outbox_leaves_a_live_claim_alone_and_takes_over_an_expired_one(env: Env) -> None:
    env.run(body([record("claimed")]))
    stored = env.store.find(env.alerts()["claimed"]["alert_id"])
    assert stored is not None
    # Another instance claimed slack a moment ago (and may die while sending).
    ledger = codec.loads(stored.entity["ledger"], {})
    ledger["slack"] = {**ledger["slack"], "state": "pending", "at": None}
    ledger = lifecycle.claim(ledger, ["slack"], now=env.clock(), lease=LEASE, token="other")
    env.store.update(stored, {"ledger": codec.dumps(ledger), "owed": True}, env.clock())
    env.store.mark_owed(Ref(stored.entity["PartitionKey"], stored.entity["RowKey"]), env.clock(), env.clock())
    sent_before = len(env.slack.sent)
    redeliver(env.deliverer())
    assert len(env.slack.sent) == sent_before  # the claim is live
    env.clock.now += LEASE + timedelta(seconds=1)
    redeliver(env.deliverer())
    assert len(env.slack.sent) == sent_before + 1


def test_an_orphan_index_row_is_dropped_after_the_grace_period(env: Env) -> None:
    ref = Ref("t-" + TENANT, "0" * 32)
    env.store.mark_owed(ref, env.clock(), env.clock())
    assert redeliver(env.deliverer()).dropped == 0  # the alert may be about to be created
    env.clock.advance(hours=2)
    assert redeliver(env.deliverer()).dropped == 1
    assert env.owed_rows() == []


# ---- storage outages ----

class Outage:
    """Stops the real Azurite at the n-th storage request; records requests and sends in one trace."""

    def __init__(self, server: Any, at: int | None) -> None:
        self.server, self.at, self.calls, self.trace = server, at, 0, []

    def __call__(self, operation: str) -> None:
        self.calls += 1
        self.trace.append(operation)
        if self.at is not None and self.calls == self.at and self.server.running:
            self.server.stop()


def outage_env(server: Any, prefix: str, outage: Outage) -> Env:
    env = Env(state_env(server.connection_string, prefix))
    env.store = AlertStore.open(env.settings, attempts=3, base_delay=0.02, on_call=outage)
    for destination in env.destinations:
        destination.answer = _traced(destination.answer, outage.trace)
    return env


def _traced(answer: Any, trace: list[str]) -> Any:
    def traced(message: Any) -> Outcome:
        trace.append("SEND")
        return answer(message)
    return traced


OUTAGE_BATCH = [record("o-1", at=T0 + timedelta(minutes=1)), record("o-2", at=T0 + timedelta(minutes=2)),
                record("o-3", user="b@contoso.onmicrosoft.com", at=T0 + timedelta(minutes=3)),
                record("o-4", at=T0 + timedelta(minutes=90)),
                record("o-5", user="c@contoso.onmicrosoft.com", at=T0 + timedelta(minutes=5))]


def _reference_trace(server: Any) -> list[str]:
    outage = Outage(server, None)
    env = outage_env(server, "reference", outage)
    env.run(body(OUTAGE_BATCH))
    return outage.trace


def test_storage_stopped_mid_batch_then_a_rerun_loses_and_duplicates_nothing(outage_azurite: Any) -> None:
    trace = _reference_trace(outage_azurite)
    # Crash at the n-th request: the first of every kind of request the batch makes (reads, the index
    # row, the alert's creation, the group rows, the member transaction, the counters, the claim before
    # a send, the index removal). The request right after a send is the one point where a crash means
    # a destination may get the alert twice (see the next test), so it is not among these.
    positions = [i for i, op in enumerate(trace) if op != "SEND"]
    number = {index: n for n, index in enumerate(positions, 1)}
    points: dict[str, int] = {}
    for index in positions[2:]:  # past the table creation
        if trace[index - 1] == "SEND":
            continue
        kind = "claim" if trace[index + 1:index + 2] == ["SEND"] else trace[index]
        points.setdefault(kind, number[index])
    assert {"create in alerts", "upsert in alerts", "transaction in groups", "create in groups", "claim",
            "delete in alerts"} <= set(points)
    for case, point in enumerate(sorted(points.values())):
        outage = Outage(outage_azurite, point)
        env = outage_env(outage_azurite, f"crash{case}x", outage)
        with pytest.raises(StorageUnavailable):
            env.run(body(OUTAGE_BATCH))
        outage_azurite.start()
        outage.at = None
        report = env.run(body(OUTAGE_BATCH))  # the Functions retry policy runs the batch again
        env.clock.advance(minutes=20)
        redeliver(env.deliverer())  # and the timer sweeps whatever a lease still held
        stored = env.alerts()
        assert sorted(stored) == ["o-1", "o-2", "o-3", "o-4", "o-5"], point
        heads = sorted(k for k, e in stored.items() if e["role"] == "head")
        assert heads == ["o-1", "o-3", "o-4", "o-5"], point
        assert [stored["o-2"]["status"]] == ["suppressed"], point
        window = env.store.window(stored["o-1"]["group_series"], stored["o-1"]["group_window"])
        assert window is not None and window["suppressed"] == 1, point
        for destination in env.destinations:
            got = Counter(m.alert.record_id for m in destination.of_type(AlertMessage))
            assert got == Counter(heads), (point, destination.name, got)
        assert {e["status"] for k, e in stored.items() if k in heads} == {"notified"}, point
        assert report.to_dict()["records"] == 5
        assert env.owed_rows() == [], point


class CrashAfterFailedRecord:
    """Stops the real Azurite at the first request after the outcome of the send that armed it is
    written."""

    def __init__(self, server: Any) -> None:
        self.server, self.armed, self.recorded = server, False, False

    def failed(self, message: Any) -> Outcome:
        self.armed = True
        return Outcome("failed", 410, "HTTP 410 from hooks.slack.com")

    def __call__(self, operation: str) -> None:
        if not self.armed:
            return
        if not self.recorded:
            self.recorded = operation == "update in alerts"
        elif self.server.running:
            self.armed = False
            self.server.stop()


def test_the_outbox_still_announces_a_failure_when_storage_fails_right_after_it(
        outage_azurite: Any) -> None:
    crash = CrashAfterFailedRecord(outage_azurite)
    env = Env(state_env(outage_azurite.connection_string, "noticecrash"))
    env.store = AlertStore.open(env.settings, attempts=2, base_delay=0.01, on_call=crash)
    env.slack.answer = lambda message: Outcome("retry", 503, "HTTP 503 from hooks.slack.com")
    env.run(body([record("late-fail")]))
    env.slack.answer = crash.failed
    env.clock.advance(minutes=5)
    with pytest.raises(StorageUnavailable):
        redeliver(env.deliverer())  # slack failed for good; storage went away before the notice
    assert env.teams.of_type(DeliveryFailedMessage) == []
    outage_azurite.start()
    redeliver(env.deliverer())  # the next timer run
    (notice,) = env.teams.of_type(DeliveryFailedMessage)
    assert notice.destination == "slack" and notice.alert.record_id == "late-fail"
    assert env.alerts()["late-fail"]["status"] == "failed" and env.owed_rows() == []
    redeliver(env.deliverer())
    assert len(env.teams.of_type(DeliveryFailedMessage)) == 1


def test_a_crash_between_a_send_and_its_record_resends_only_that_one(outage_azurite: Any) -> None:
    trace = _reference_trace(outage_azurite)
    first_send = trace.index("SEND")
    point = sum(1 for op in trace[: first_send + 1] if op != "SEND") + 1  # the outcome write
    outage = Outage(outage_azurite, point)
    env = outage_env(outage_azurite, "aftersend", outage)
    with pytest.raises(StorageUnavailable):
        env.run(body(OUTAGE_BATCH))
    outage_azurite.start()
    outage.at = None
    env.run(body(OUTAGE_BATCH))
    env.clock.advance(minutes=20)
    redeliver(env.deliverer())
    counts = Counter((d.name, m.alert.record_id) for d in env.destinations for m in d.of_type(AlertMessage))
    twice = [pair for pair, n in counts.items() if n > 1]
    assert twice == [("teams", "o-1")] and counts[("teams", "o-1")] == 2  # at-least-once at that point
    assert all(n == 1 for pair, n in counts.items() if pair != ("teams", "o-1"))


# ---- start-up ----

def test_the_pipeline_fails_at_start_up_naming_a_bad_setting(state_settings_env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="MAINTENANCE_WINDOWS"):
        build_pipeline(Settings.from_env({**state_settings_env, "MAINTENANCE_WINDOWS": "whenever/never"}))


def test_a_suppression_override_for_a_rule_that_is_not_loaded_fails_at_start_up(
        state_settings_env: dict[str, str]) -> None:
    typo = '{"bbd1a775-8267-41fa-9232-20e5582596ab": {"group_by": ["user.id"], "window": "1h"}}'
    with pytest.raises(SettingsError, match=r"SUPPRESSION_OVERRIDES.*20e5582596ab"):
        build_pipeline(Settings.from_env({**state_settings_env, "SUPPRESSION_OVERRIDES": typo}))
    known = typo.replace("596ab", "596ac")
    assert build_pipeline(Settings.from_env({**state_settings_env, "SUPPRESSION_OVERRIDES": known}),
                          destinations=[]).policy.overrides


def test_the_pipeline_keeps_rules_store_and_destinations_for_every_batch(
        state_settings_env: dict[str, str]) -> None:
    recorder = Recorder("webhook")
    clock = Clock(T0 + timedelta(hours=1))
    pipeline = build_pipeline(Settings.from_env(state_settings_env), clock=clock, destinations=[recorder])
    assert pipeline.handle([body([record("p-1")])]).notified == 1
    assert pipeline.handle([body([record("p-1")])]).notified == 0
    assert pipeline.redeliver().due == 0
    assert recorder.alert_ids() and len(recorder.sent) == 1
    assert "rec" not in pipeline.cleanup()  # nothing expired yet: every table reports zero
    assert set(pipeline.cleanup().values()) == {0}
