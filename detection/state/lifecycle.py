"""Pure decisions of the alert lifecycle: what an alert becomes, which window it belongs to, what is owed.

Nothing here reads storage, the clock or the environment; every function takes the facts and returns a
decision, so the same inputs give the same answer on every instance. The imperative part (reading and
writing entities, sending) is `state.store`, `state.delivery` and `handler`.

Suppression windows are fixed buckets of event time. A group is (rule, tenant, group-by values); its
window of length W containing event time t is [epoch + ⌊(t - epoch)/W⌋·W, + W), epoch = 1970-01-01 UTC.
Two instances seeing two alerts of the same group therefore compute the same window without talking to
each other, and a record arriving five days late lands in the window of the moment it describes, not of
the moment it arrived. Anchoring windows to each group's first event would make the grouping depend on
arrival order (a late earlier record would open an overlapping window), so counts would differ between
runs; fixed buckets make them a function of the records alone. The price: two alerts a minute apart
across a bucket edge notify twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from detection.alerts import Alert, get_field
from detection.rules.loader import Rule, Suppression, parse_suppression
from detection.settings import Settings, SettingsError
from detection.state import keys

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Status = Literal["new", "notified", "suppressed", "excepted", "muted", "overflow", "failed",
                 "below_threshold"]
STATUSES: tuple[str, ...] = ("new", "notified", "suppressed", "excepted", "muted", "overflow", "failed",
                             "below_threshold")
LedgerState = Literal["pending", "delivered", "accepted", "failed"]
TERMINAL = frozenset({"delivered", "accepted", "failed"})
ERROR_CHARS = 500


# ---- event time ----

def parse_time(text: str | None) -> datetime | None:
    """An ISO-8601 time as aware UTC; a time without zone is UTC (audit records' CreationTime has none)."""
    if not text or not isinstance(text, str):
        return None
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # fromisoformat takes at most 6 fractional digits; audit records sometimes carry 7.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def event_instant(alert: Alert, fallback: datetime) -> datetime:
    """When the alert's event happened; processing time only when the record carries no usable time."""
    return parse_time(alert.event_time) or fallback


# ---- maintenance windows ----

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEK = 7 * 24 * 60
_WEEKLY = re.compile(r"^\s*([A-Za-z]{3,9})\s+(\d{1,2}):(\d{2})\s*/\s*([A-Za-z]{3,9})\s+(\d{1,2}):(\d{2})\s*$")
_DURATION = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


@dataclass(frozen=True)
class Interval:
    """One absolute maintenance interval, [start, end)."""

    start: datetime
    end: datetime

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True)
class Weekly:
    """A weekly UTC window in minutes since Monday 00:00, [start, end); it may wrap past Sunday."""

    start: int
    end: int

    def contains(self, when: datetime) -> bool:
        when = when.astimezone(UTC)
        minute = when.weekday() * 1440 + when.hour * 60 + when.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


Window = Interval | Weekly


def _week_minute(day: str, hour: str, minute: str, item: str) -> int:
    name = day.lower()[:3]
    if name not in _DAYS or day.lower() not in (name, _full_day(name)):
        raise ValueError(f"{item!r}: unknown day {day!r} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
    h, m = int(hour), int(minute)
    if h > 23 or m > 59:
        raise ValueError(f"{item!r}: {hour}:{minute} is not a time of day")
    return _DAYS.index(name) * 1440 + h * 60 + m


def _full_day(short: str) -> str:
    return {"mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday", "fri": "friday",
            "sat": "saturday", "sun": "sunday"}[short]


def _iso_duration(text: str, item: str) -> timedelta:
    match = _DURATION.match(text.strip().upper())
    if not match or text.strip().upper() in ("P", "PT"):
        raise ValueError(f"{item!r}: {text!r} is neither a time nor an ISO-8601 duration such as PT4H")
    weeks, days, hours, minutes, seconds = match.groups()
    return timedelta(weeks=int(weeks or 0), days=int(days or 0), hours=int(hours or 0),
                     minutes=int(minutes or 0), seconds=float(seconds or 0))


def _interval(item: str) -> Interval:
    start_text, _, end_text = item.partition("/")
    start, end = parse_time(start_text), parse_time(end_text)
    if start is None and end is None:
        raise ValueError(
            f"{item!r}: expected START/END as ISO-8601 times (2026-01-05T22:00Z/2026-01-06T02:00Z)")
    if start is None:
        assert end is not None
        start = end - _iso_duration(start_text, item)
    elif end is None:
        end = start + _iso_duration(end_text, item)
    if end <= start:
        raise ValueError(f"{item!r}: the end is not after the start")
    return Interval(start, end)


def parse_maintenance_windows(text: str | None) -> tuple[Window, ...]:
    """`MAINTENANCE_WINDOWS`: comma-separated ISO-8601 intervals (START/END, START/PT4H, PT4H/END)
    and weekly UTC windows (`Sat 22:00/Sun 04:00`). Raises ValueError naming the bad item."""
    windows: list[Window] = []
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        if "/" not in item:
            raise ValueError(f"{item!r}: expected START/END")
        weekly = _WEEKLY.match(item)
        if weekly:
            start = _week_minute(*weekly.group(1, 2, 3), item)
            end = _week_minute(*weekly.group(4, 5, 6), item)
            if start == end:
                raise ValueError(f"{item!r}: the window is empty (start equals end)")
            windows.append(Weekly(start, end))
        else:
            windows.append(_interval(item))
    return tuple(windows)


def in_maintenance(windows: Iterable[Window], when: datetime) -> bool:
    """Maintenance is judged by when the change happened (event time), so a record that arrives after
    the window closed is still recognised as part of the planned work."""
    return any(window.contains(when) for window in windows)


# ---- suppression ----

@dataclass(frozen=True)
class Group:
    """One suppression window of one series (rule, tenant, group-by values)."""

    series: str
    values: tuple[Any, ...]
    start: datetime
    end: datetime


def parse_suppression_overrides(raw: Mapping[str, Any]) -> dict[str, Suppression | None]:
    """`SUPPRESSION_OVERRIDES` as rule_id → Suppression; `false`/`null` turns suppression off for a rule."""
    overrides: dict[str, Suppression | None] = {}
    for rule_id, spec in raw.items():
        where = f"SUPPRESSION_OVERRIDES[{rule_id!r}]"
        if spec is None or spec is False:
            overrides[rule_id] = None
            continue
        if not isinstance(spec, dict):
            raise SettingsError(f"setting {where}: expected an object with group_by, window, missing")
        unknown = set(spec) - {"group_by", "window", "missing"}
        if unknown:
            raise SettingsError(f"setting {where}: unknown keys {', '.join(sorted(unknown))}")
        try:
            overrides[rule_id] = parse_suppression(spec, where)
        except ValueError as exc:
            raise SettingsError(f"setting {exc}") from None
    return overrides


def suppression_for(rule: Rule | None, overrides: Mapping[str, Suppression | None]) -> Suppression | None:
    if rule is None:
        return None
    if rule.rule_id in overrides:
        return overrides[rule.rule_id]
    return rule.suppression


def window_bounds(when: datetime, window: timedelta) -> tuple[datetime, datetime]:
    """The fixed event-time bucket holding `when` (see the module docstring for why fixed)."""
    buckets = (when - EPOCH) // window
    start = EPOCH + buckets * window
    return start, start + window


def _group_value(value: Any) -> Any:
    if isinstance(value, list):
        return sorted((_group_value(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): _group_value(v) for k, v in sorted(value.items())}
    return value


def group_for(alert: Alert, suppression: Suppression | None, when: datetime) -> Group | None:
    """The window this alert is counted in, or None when it is never suppressed (no suppression for
    the rule, or a group-by field is missing and the rule says `missing = "separate"`)."""
    if suppression is None:
        return None
    values = tuple(_group_value(get_field(alert.ecs, name)) for name in suppression.group_by)
    if suppression.missing == "separate" and any(v is None for v in values):
        return None
    start, end = window_bounds(when, suppression.window)
    return Group(keys.series_key(alert.rule_id, alert.tenant_id, values), values, start, end)


# ---- what a batch's alerts become ----

@dataclass(frozen=True)
class Planned:
    """One alert and what storing it means: its first status, its window, its overflow notice."""

    alert: Alert
    status: Status
    when: datetime
    group: Group | None = None
    notice: str | None = None


@dataclass(frozen=True)
class OverflowPlan:
    rule_id: str
    tenant_id: str
    notice: str
    alerts: tuple[Alert, ...]


@dataclass(frozen=True)
class BatchPlan:
    alerts: tuple[Planned, ...] = ()
    overflow: tuple[OverflowPlan, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)


def plan_batch(
    alerts: Sequence[Alert],
    overflow: Sequence[Alert],
    excepted: Sequence[Alert],
    *,
    rules: Mapping[str, Rule],
    overrides: Mapping[str, Suppression | None],
    windows: Sequence[Window],
    now: datetime,
) -> BatchPlan:
    """Excepted alerts are stored as excepted, alerts in a maintenance window as muted, alerts past a
    rule's max_signals as overflow (one notice per rule and tenant of the batch); the rest are new and
    carry their suppression window.

    Maintenance is checked before overflow: a planned bulk change matches far more records than
    max_signals, and its overflow summary would notify exactly the work the window was set to silence.
    """
    planned: list[Planned] = []
    for alert in excepted:
        planned.append(Planned(alert, "excepted", event_instant(alert, now)))
    for alert in alerts:
        when = event_instant(alert, now)
        if in_maintenance(windows, when):
            planned.append(Planned(alert, "muted", when))
            continue
        group = group_for(alert, suppression_for(rules.get(alert.rule_id), overrides), when)
        planned.append(Planned(alert, "new", when, group))
    by_rule: dict[tuple[str, str], list[Alert]] = {}
    for alert in overflow:
        when = event_instant(alert, now)
        if in_maintenance(windows, when):
            planned.append(Planned(alert, "muted", when))
            continue
        by_rule.setdefault((alert.rule_id, alert.tenant_id), []).append(alert)
    plans: list[OverflowPlan] = []
    for (rule_id, tenant_id), members in by_rule.items():
        # The notice's id is a function of the batch's overflow set, so a re-run of the same batch
        # finds the alerts it already assigned to this notice and the notice itself.
        notice = keys.notice_id("overflow", rule_id, tenant_id, sorted(a.alert_id for a in members))
        plans.append(OverflowPlan(rule_id, tenant_id, notice, tuple(members)))
        for alert in members:
            planned.append(Planned(alert, "overflow", event_instant(alert, now), notice=notice))
    return BatchPlan(tuple(planned), tuple(plans))


# ---- the per-destination ledger ----
# {name: {"state": pending|delivered|accepted|failed, "attempts": n, "next": iso, "lease": iso|None,
#         "token": str|None, "error": str|None, "http": int|None, "at": iso|None}}

Ledger = dict[str, dict[str, Any]]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def new_ledger(destinations: Iterable[str], now: datetime) -> Ledger:
    return {name: {"state": "pending", "attempts": 0, "next": _iso(now), "lease": None, "token": None,
                   "error": None, "http": None, "at": None} for name in destinations}


def _leased(entry: Mapping[str, Any], now: datetime) -> bool:
    lease = parse_time(entry.get("lease"))
    return lease is not None and lease > now


def due(ledger: Mapping[str, Mapping[str, Any]], now: datetime) -> list[str]:
    """Destinations owed a send now: pending, their time has come, and nobody is sending right now."""
    names = []
    for name, entry in ledger.items():
        if entry.get("state") != "pending" or _leased(entry, now):
            continue
        when = parse_time(entry.get("next"))
        if when is None or when <= now:
            names.append(name)
    return names


def claim(ledger: Ledger, names: Iterable[str], *, now: datetime, lease: timedelta, token: str) -> Ledger:
    """Mark `names` as being sent by the holder of `token` until the lease ends.

    Written with the entity's ETag, a claim is what makes one instance the only sender: a second
    instance reading the ledger sees the lease and leaves the destination alone. If the sender dies
    mid-send, the lease runs out and the outbox sends again (at-least-once at that one point; the
    webhook carries the alert id as an idempotency key for exactly this case).
    """
    updated = {name: dict(entry) for name, entry in ledger.items()}
    for name in names:
        entry = updated[name]
        entry["attempts"] = int(entry.get("attempts") or 0) + 1
        entry["lease"] = _iso(now + lease)
        entry["token"] = token
    return updated


def record_outcome(
    ledger: Ledger,
    name: str,
    outcome: Any,
    *,
    token: str,
    now: datetime,
    created: datetime,
    max_age: timedelta,
    delay: timedelta,
) -> Ledger:
    """The ledger after one send to `name` ended in `outcome` (a notify Outcome).

    A terminal entry is never changed again: a destination that has the alert is not sent it twice.
    A retry is scheduled `delay` later but never past the alert's maximum delivery age; at that age the
    destination is marked failed.
    """
    updated = {n: dict(e) for n, e in ledger.items()}
    entry = updated.get(name)
    if entry is None or entry.get("state") in TERMINAL:
        return updated
    if entry.get("token") not in (None, token) and _leased(entry, now):
        return updated  # another sender holds it now; its outcome will be recorded by it
    error = _clip_error(outcome.error)
    entry.update(lease=None, token=None, http=outcome.http_status, error=error)
    if outcome.status in ("delivered", "accepted"):
        entry.update(state=outcome.status, at=_iso(now), error=None)
    elif outcome.status == "failed":
        entry.update(state="failed", at=_iso(now))
    else:
        deadline = created + max_age
        if now >= deadline:
            entry.update(state="failed", at=_iso(now),
                         error=_clip_error(f"gave up after {_age(max_age)}: {error or 'no answer'}"))
        else:
            entry.update(state="pending", next=_iso(min(now + delay, deadline)))
    return updated


def _age(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:g}d" if hours >= 24 else f"{hours:g}h"


def _clip_error(error: str | None) -> str | None:
    if error is None:
        return None
    text = " ".join(str(error).split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def owes(ledger: Mapping[str, Mapping[str, Any]]) -> bool:
    return any(entry.get("state") == "pending" for entry in ledger.values())


def next_due(ledger: Mapping[str, Mapping[str, Any]]) -> datetime | None:
    """When the outbox should look at this deliverable again: the earliest next attempt or lease end."""
    times = []
    for entry in ledger.values():
        if entry.get("state") != "pending":
            continue
        lease = parse_time(entry.get("lease"))
        when = parse_time(entry.get("next"))
        candidates = [t for t in (lease, when) if t is not None]
        if candidates:
            times.append(max(candidates))
    return min(times) if times else None


def failed(ledger: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {name for name, entry in ledger.items() if entry.get("state") == "failed"}


def delivered(ledger: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {name for name, entry in ledger.items() if entry.get("state") in ("delivered", "accepted")}


def decided_status(ledger: Mapping[str, Mapping[str, Any]], below: Mapping[str, str]) -> Status:
    """The status of a head or solo alert once its destinations are chosen. `below` maps each
    destination that does not take the alert to its minimum severity.

    When every destination is in `below`, nothing will ever be sent, and "new" (not yet notified)
    would say the opposite: the alert is below_threshold, stored and listed, notified nowhere on
    purpose. Destinations that do take it make it new until they have it."""
    if not ledger and below:
        return "below_threshold"
    return "new"


def delivery_status(ledger: Mapping[str, Mapping[str, Any]]) -> Status:
    """What a notified alert shows: new while anything is owed, failed if a destination never got it,
    notified once every destination has it."""
    if owes(ledger):
        return "new"
    if failed(ledger):
        return "failed"
    return "notified" if ledger else "new"


# ---- start-up validation ----

@dataclass(frozen=True)
class StatePolicy:
    """The validated state-related settings a handler needs, parsed once at start-up."""

    windows: tuple[Window, ...]
    overrides: dict[str, Suppression | None]
    retention: timedelta
    max_age: timedelta


def validate_settings(settings: Settings) -> StatePolicy:
    """Every state setting checked once, failing with the setting's name, before any batch runs."""
    try:
        windows = parse_maintenance_windows(settings.maintenance_windows)
    except ValueError as exc:
        raise SettingsError(f"setting MAINTENANCE_WINDOWS: {exc}") from None
    overrides = parse_suppression_overrides(settings.suppression_overrides)
    keys.check_table_name("ALERTS_TABLE", settings.alerts_table)
    keys.check_table_name("GROUPS_TABLE", settings.groups_table)
    if settings.alerts_table.lower() == settings.groups_table.lower():
        raise SettingsError("setting GROUPS_TABLE: must differ from ALERTS_TABLE")
    retention = timedelta(days=settings.retention_days)
    if settings.delivery_max_age >= retention:
        raise SettingsError(
            f"setting DELIVERY_MAX_AGE: must be shorter than RETENTION_DAYS ({settings.retention_days}d), "
            "or alerts could be deleted while a notification is still owed")
    return StatePolicy(windows, overrides, retention, settings.delivery_max_age)
