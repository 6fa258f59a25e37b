"""The pure decisions of the alert lifecycle: time, maintenance, suppression windows, the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from detection.notify.base import Outcome
from detection.rules.loader import Suppression
from detection.settings import Settings, SettingsError
from detection.state import lifecycle
from detection.state.lifecycle import (
    Interval,
    Weekly,
    group_for,
    in_maintenance,
    parse_maintenance_windows,
    parse_time,
    window_bounds,
)
from tests.state.statekit import T0, make_alert, seed_rule


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---- time ----

@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-30T14:02:11", utc(2026, 11, 30, 14, 2, 11)),
    ("2026-11-30T14:02:11Z", utc(2026, 11, 30, 14, 2, 11)),
    ("2026-11-30T14:02:11.1234567Z", utc(2026, 11, 30, 14, 2, 11, 123456)),
    ("2026-11-30T16:02:11+02:00", utc(2026, 11, 30, 14, 2, 11)),
    ("not a time", None),
    ("", None),
])
def test_parse_time_reads_audit_record_times_as_utc(text: str, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_event_time_falls_back_to_processing_time_only_without_a_usable_time() -> None:
    now = utc(2027, 1, 1)
    assert lifecycle.event_instant(make_alert("r1", at=T0), now) == T0
    broken = make_alert("r2")
    broken = type(broken)(**{**broken.__dict__, "event_time": "yesterday"})
    assert lifecycle.event_instant(broken, now) == now


# ---- maintenance windows ----

def test_iso_intervals_in_every_form() -> None:
    windows = parse_maintenance_windows(
        "2026-01-05T22:00Z/2026-01-06T02:00Z, 2026-02-01T00:00Z/PT4H, P1D/2026-03-02T00:00Z")
    assert windows == (
        Interval(utc(2026, 1, 5, 22), utc(2026, 1, 6, 2)),
        Interval(utc(2026, 2, 1), utc(2026, 2, 1, 4)),
        Interval(utc(2026, 3, 1), utc(2026, 3, 2)),
    )
    assert in_maintenance(windows, utc(2026, 1, 6, 1, 59))
    assert not in_maintenance(windows, utc(2026, 1, 6, 2, 0))  # the end is outside
    assert in_maintenance(windows, utc(2026, 2, 1, 3))
    assert not in_maintenance(windows, utc(2026, 2, 1, 4, 1))


def test_weekly_windows_wrap_around_the_week_in_utc() -> None:
    sat_night, sun_to_mon = parse_maintenance_windows("Sat 22:00/Sun 04:00, sunday 23:00/Mon 01:30")
    assert sat_night == Weekly(5 * 1440 + 22 * 60, 6 * 1440 + 4 * 60)
    saturday = utc(2026, 12, 5, 23, 30)  # a Saturday
    assert saturday.weekday() == 5
    assert sat_night.contains(saturday)
    assert sat_night.contains(saturday + timedelta(hours=4, minutes=29))  # Sun 03:59
    assert not sat_night.contains(saturday + timedelta(hours=4, minutes=30))  # Sun 04:00
    assert not sat_night.contains(saturday - timedelta(hours=2))  # Sat 21:30
    assert sun_to_mon.contains(utc(2026, 12, 7, 1, 0))  # Monday 01:00, after the wrap
    assert sun_to_mon.contains(utc(2026, 12, 6, 23, 0))  # Sunday 23:00
    assert not sun_to_mon.contains(utc(2026, 12, 7, 1, 30))
    # A time in another zone is judged in UTC.
    assert sat_night.contains(datetime.fromisoformat("2026-12-06T01:00:00+02:00"))


@pytest.mark.parametrize(("text", "fragment"), [
    ("Sat 22:00", "expected START/END"),
    ("Sat 25:00/Sun 04:00", "not a time of day"),
    ("Sam 22:00/Sun 04:00", "unknown day"),
    ("Sat 22:00/Sat 22:00", "empty"),
    ("2026-01-06T02:00Z/2026-01-05T22:00Z", "not after the start"),
    ("2026-01-05T22:00Z/soon", "ISO-8601 duration"),
    ("yesterday/today", "ISO-8601 times"),
])
def test_bad_maintenance_windows_fail_at_start_up_naming_the_setting(text: str, fragment: str) -> None:
    settings = Settings.from_env({"MAINTENANCE_WINDOWS": text})
    with pytest.raises(SettingsError) as caught:
        lifecycle.validate_settings(settings)
    assert "MAINTENANCE_WINDOWS" in str(caught.value)
    assert fragment in str(caught.value)


def test_other_state_settings_are_validated_at_start_up() -> None:
    with pytest.raises(SettingsError, match="ALERTS_TABLE"):
        lifecycle.validate_settings(Settings.from_env({"ALERTS_TABLE": "bad-name"}))
    with pytest.raises(SettingsError, match="GROUPS_TABLE"):
        lifecycle.validate_settings(Settings.from_env({"ALERTS_TABLE": "same", "GROUPS_TABLE": "SAME"}))
    with pytest.raises(SettingsError, match="DELIVERY_MAX_AGE"):
        lifecycle.validate_settings(Settings.from_env({"DELIVERY_MAX_AGE": "9d", "RETENTION_DAYS": "8"}))
    with pytest.raises(SettingsError, match=r"SUPPRESSION_OVERRIDES.*window"):
        lifecycle.validate_settings(Settings.from_env(
            {"SUPPRESSION_OVERRIDES": '{"r1": {"window": "an hour"}}'}))
    with pytest.raises(SettingsError, match=r"SUPPRESSION_OVERRIDES.*unknown keys"):
        lifecycle.validate_settings(Settings.from_env({"SUPPRESSION_OVERRIDES": '{"r1": {"windw": "1h"}}'}))
    policy = lifecycle.validate_settings(Settings.from_env(
        {"SUPPRESSION_OVERRIDES": '{"r1": {"group_by": ["user.id"], "window": "10m"}, "r2": false}'}))
    assert policy.overrides == {"r1": Suppression(("user.id",), timedelta(minutes=10), "group"), "r2": None}


# ---- suppression windows ----

def test_windows_are_fixed_buckets_of_event_time() -> None:
    hour = timedelta(hours=1)
    assert window_bounds(utc(2026, 11, 30, 14, 59, 59), hour) == (utc(2026, 11, 30, 14),
                                                                  utc(2026, 11, 30, 15))
    assert window_bounds(utc(2026, 11, 30, 15), hour) == (utc(2026, 11, 30, 15), utc(2026, 11, 30, 16))
    start, end = window_bounds(utc(2026, 11, 30, 14, 7), timedelta(minutes=7))
    assert end - start == timedelta(minutes=7) and start <= utc(2026, 11, 30, 14, 7) < end


def test_group_is_rule_tenant_and_values_and_window() -> None:
    spec = seed_rule().suppression
    a = make_alert("r1", at=T0 + timedelta(minutes=1))
    b = make_alert("r2", at=T0 + timedelta(minutes=59))
    c = make_alert("r3", at=T0 + timedelta(minutes=61))
    other_user = make_alert("r4", user="someone@contoso.onmicrosoft.com", at=T0)
    other_tenant = make_alert("r5", tenant="0000aaaa-7d3a-4f0e-9c55-1a2b3c4d5e6f", at=T0)
    ga, gb, gc = (group_for(x, spec, parse_time(x.event_time)) for x in (a, b, c))  # type: ignore[arg-type]
    assert ga is not None and gb is not None and gc is not None
    assert ga == gb
    assert gc.series == ga.series and gc.start == ga.end
    assert group_for(other_user, spec, T0).series != ga.series  # type: ignore[union-attr]
    assert group_for(other_tenant, spec, T0).series != ga.series  # type: ignore[union-attr]


def test_missing_group_field_policy() -> None:
    no_user_1, no_user_2 = make_alert("r1", user=None), make_alert("r2", user=None)
    grouped = Suppression(("organization.id", "user.id"), timedelta(hours=1), "group")
    separate = Suppression(("organization.id", "user.id"), timedelta(hours=1), "separate")
    assert group_for(no_user_1, grouped, T0) == group_for(no_user_2, grouped, T0)
    assert group_for(no_user_1, separate, T0) is None
    assert group_for(make_alert("r3"), separate, T0) is not None
    assert group_for(no_user_1, None, T0) is None


def test_plan_batch_classifies_and_applies_overrides() -> None:
    rule = seed_rule()
    windows = parse_maintenance_windows("2026-11-30T13:00Z/2026-11-30T14:30Z")
    in_window = make_alert("r1", at=T0 + timedelta(minutes=10))
    outside = make_alert("r2", at=T0 + timedelta(hours=2))
    excepted = make_alert("r3", at=T0 + timedelta(hours=2))
    over = [make_alert(f"o{i}", at=T0 + timedelta(hours=3, minutes=i)) for i in range(3)]
    plan = lifecycle.plan_batch([in_window, outside], over, [excepted], rules={rule.rule_id: rule},
                                overrides={}, windows=windows, now=utc(2026, 12, 1))
    statuses = {p.alert.record_id: p.status for p in plan.alerts}
    assert statuses == {"r1": "muted", "r2": "new", "r3": "excepted", "o0": "overflow", "o1": "overflow",
                        "o2": "overflow"}
    assert len(plan.overflow) == 1 and plan.overflow[0].alerts == tuple(over)
    assert {p.notice for p in plan.alerts if p.status == "overflow"} == {plan.overflow[0].notice}
    new = next(p for p in plan.alerts if p.status == "new")
    assert new.group is not None and new.group.end - new.group.start == timedelta(minutes=60)
    # An override turns suppression off for the rule.
    plan = lifecycle.plan_batch([outside], [], [], rules={rule.rule_id: rule}, overrides={rule.rule_id: None},
                                windows=(), now=utc(2026, 12, 1))
    assert plan.alerts[0].group is None


# ---- the ledger ----

def test_ledger_claim_outcome_and_terminal_states() -> None:
    now = utc(2026, 12, 1)
    created = now
    ledger = lifecycle.new_ledger(["teams", "slack"], now)
    assert lifecycle.due(ledger, now) == ["teams", "slack"] and lifecycle.owes(ledger)
    claimed = lifecycle.claim(ledger, ["teams", "slack"], now=now, lease=timedelta(minutes=10), token="A")
    assert lifecycle.due(claimed, now + timedelta(minutes=5)) == []  # leased: nobody else sends
    assert lifecycle.due(claimed, now + timedelta(minutes=11)) == ["teams", "slack"]  # the sender died
    options = {"now": now, "created": created, "max_age": timedelta(days=3), "delay": timedelta(minutes=2)}
    after = lifecycle.record_outcome(claimed, "teams", Outcome("accepted", 202), token="A", **options)
    after = lifecycle.record_outcome(after, "slack", Outcome("retry", 503, "HTTP 503 from hooks.slack.com"),
                                     token="A", **options)
    assert after["teams"]["state"] == "accepted"
    assert after["slack"]["state"] == "pending" and after["slack"]["attempts"] == 1
    assert lifecycle.due(after, now + timedelta(minutes=1)) == []
    assert lifecycle.due(after, now + timedelta(minutes=2)) == ["slack"]
    assert lifecycle.next_due(after) == now + timedelta(minutes=2)
    assert lifecycle.delivery_status(after) == "new"
    # A terminal entry is never changed again, whatever is recorded later.
    again = lifecycle.record_outcome(after, "teams", Outcome("failed", 410, "gone"), token="A", **options)
    assert again["teams"]["state"] == "accepted"
    done = lifecycle.record_outcome(after, "slack", Outcome("delivered", 200), token="A", **options)
    assert lifecycle.delivery_status(done) == "notified" and not lifecycle.owes(done)


def test_retries_stop_at_the_maximum_age() -> None:
    created = utc(2026, 12, 1)
    max_age = timedelta(days=3)
    ledger = lifecycle.claim(lifecycle.new_ledger(["slack"], created), ["slack"], now=created,
                             lease=timedelta(minutes=10), token="A")
    late = created + timedelta(days=2, hours=23)
    retry = Outcome("retry", 503, "HTTP 503 from hooks.slack.com")
    scheduled = lifecycle.record_outcome(ledger, "slack", retry, token="A", now=late, created=created,
                                         max_age=max_age, delay=timedelta(hours=1))
    assert parse_time(scheduled["slack"]["next"]) == created + max_age  # not past the deadline
    final = lifecycle.record_outcome(ledger, "slack", retry, token="A", now=created + max_age,
                                     created=created, max_age=max_age, delay=timedelta(hours=1))
    assert final["slack"]["state"] == "failed"
    assert final["slack"]["error"].startswith("gave up after 3d: HTTP 503")
    assert lifecycle.delivery_status(final) == "failed"


def test_another_senders_live_claim_is_left_alone() -> None:
    now = utc(2026, 12, 1)
    ledger = lifecycle.claim(lifecycle.new_ledger(["teams"], now), ["teams"], now=now,
                             lease=timedelta(minutes=10), token="B")
    after = lifecycle.record_outcome(ledger, "teams", Outcome("retry", None, "timeout"), token="A", now=now,
                                     created=now, max_age=timedelta(days=3), delay=timedelta(minutes=1))
    assert after["teams"]["token"] == "B"


def test_errors_in_the_ledger_are_bounded() -> None:
    now = utc(2026, 12, 1)
    ledger = lifecycle.claim(lifecycle.new_ledger(["teams"], now), ["teams"], now=now,
                             lease=timedelta(minutes=10), token="A")
    after = lifecycle.record_outcome(ledger, "teams", Outcome("failed", 400, "x" * 5000), token="A", now=now,
                                     created=now, max_age=timedelta(days=3), delay=timedelta(minutes=1))
    assert len(after["teams"]["error"]) <= lifecycle.ERROR_CHARS


def test_an_alert_no_destination_takes_for_its_severity_is_below_threshold_not_new() -> None:
    now = utc(2026, 12, 1)
    assert lifecycle.decided_status({}, {"teams": "high", "slack": "critical"}) == "below_threshold"
    # One destination takes it: it is new until that one has it, whatever the others' thresholds.
    assert lifecycle.decided_status(lifecycle.new_ledger(["teams"], now), {"slack": "high"}) == "new"
    assert lifecycle.decided_status(lifecycle.new_ledger(["teams"], now), {}) == "new"
    assert "below_threshold" in lifecycle.STATUSES
