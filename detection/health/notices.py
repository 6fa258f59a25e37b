"""What the health routine remembers between runs, and the pure decisions over it.

The routine runs on a timer, possibly on two instances at once, and a notification must go out once
per condition. So the order is: decide (pure, here) → persist the new state with optimistic
concurrency (only one run wins a given state) → send what the state says is owed → persist the
outcomes. A notice lives in `pending` with the destinations it still owes; it leaves when every
destination has taken it, given up on it, or it is older than the delivery age limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from detection.health.checks import Evaluation, Mark, transitions
from detection.health.counters import parse_time, to_iso
from detection.health.summary import transition_notice
from detection.state.keys import notice_id

# The most notices kept owed at once; a destination that is down for days must not grow the state
# without bound (the oldest are dropped and counted).
MAX_PENDING = 50
RETRY_BASE = timedelta(minutes=5)
RETRY_CAP = timedelta(hours=2)
HEALTH = "health"
HEARTBEAT = "heartbeat"


@dataclass(frozen=True)
class Pending:
    notice_id: str
    kind: str                       # "health" (a transition) or "heartbeat"
    summary: Mapping[str, Any]      # the HealthMessage summary
    owed: tuple[str, ...]           # destination names still owed
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class HealthState:
    marks: Mapping[str, Mark] = field(default_factory=dict)
    pending: tuple[Pending, ...] = ()
    heartbeat_day: str | None = None   # the last UTC day a heartbeat was queued for
    given_up: int = 0                  # notices dropped undelivered (too old, too many, failed)

    def to_plain(self) -> dict[str, Any]:
        return {
            "marks": [[m.kind, m.key, m.tenant_id, m.subject, to_iso(m.last_seen), to_iso(m.notified_at)]
                      for m in self.marks.values()],
            "pending": [{"id": p.notice_id, "kind": p.kind, "summary": dict(p.summary),
                         "owed": list(p.owed), "created_at": to_iso(p.created_at), "attempts": p.attempts,
                         "next_attempt_at": to_iso(p.next_attempt_at), "last_error": p.last_error}
                        for p in self.pending],
            "heartbeat_day": self.heartbeat_day,
            "given_up": self.given_up,
        }

    @classmethod
    def from_plain(cls, plain: Mapping[str, Any]) -> HealthState:
        try:
            marks = {}
            for kind, key, tenant, subject, last_seen, notified_at in plain.get("marks") or ():
                marks[key] = Mark(kind, key, tenant, subject, parse_time(last_seen), parse_time(notified_at))
            pending = tuple(
                Pending(p["id"], p["kind"], dict(p["summary"]), tuple(p["owed"]), parse_time(p["created_at"]),
                        int(p.get("attempts", 0)), parse_time(p.get("next_attempt_at")), p.get("last_error"))
                for p in plain.get("pending") or ())
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"stored health state is malformed: {exc}") from None
        return cls(marks, pending, plain.get("heartbeat_day"), int(plain.get("given_up") or 0))


def heartbeat_day_due(state: HealthState, now: datetime, enabled: bool) -> date | None:
    """The finished UTC day a heartbeat is owed for, or None (off, or already queued)."""
    if not enabled:
        return None
    day = now.date() - timedelta(days=1)
    if state.heartbeat_day is not None and state.heartbeat_day >= day.isoformat():
        return None
    return day


def advance(
    state: HealthState,
    evaluations: Iterable[Evaluation],
    *,
    now: datetime,
    destinations: Sequence[str],
    forget_after: timedelta,
    heartbeat: tuple[date, Mapping[str, Any]] | None = None,
) -> HealthState:
    """The state after one run of the checks: new marks, and the notices owed because of them."""
    change = transitions(evaluations, state.marks, now, forget_after=forget_after)
    pending = list(state.pending)
    notice = transition_notice(change)
    if notice is not None and destinations:
        pending.append(_pending(HEALTH, notice, destinations, now, now.isoformat(),
                                [f.key for f in change.started], [m.key for m in change.ended]))
    heartbeat_day = state.heartbeat_day
    if heartbeat is not None:
        day, summary = heartbeat
        heartbeat_day = day.isoformat()
        if destinations:
            pending.append(_pending(HEARTBEAT, summary, destinations, now, day.isoformat()))
    given_up = state.given_up
    if len(pending) > MAX_PENDING:
        given_up += len(pending) - MAX_PENDING
        pending = pending[-MAX_PENDING:]
    return HealthState(change.marks, tuple(pending), heartbeat_day, given_up)


def due(state: HealthState, now: datetime) -> list[tuple[Pending, str]]:
    """(notice, destination) pairs to try now, oldest notice first."""
    return [(p, name) for p in state.pending
            if p.next_attempt_at is None or p.next_attempt_at <= now for name in p.owed]


def claim(state: HealthState, pairs: Sequence[tuple[Pending, str]], *, until: datetime) -> HealthState:
    """The state with the notices of `pairs` leased to this run until `until`: a concurrent run that
    reads it finds nothing due, and if this run dies the lease runs out and the next one sends."""
    ids = {p.notice_id for p, _ in pairs}
    return replace(state, pending=tuple(replace(p, next_attempt_at=until) if p.notice_id in ids else p
                                        for p in state.pending))


def settle(
    state: HealthState,
    outcomes: Mapping[tuple[str, str], tuple[str, str | None]],
    *,
    now: datetime,
    max_age: timedelta,
) -> HealthState:
    """Apply send outcomes, keyed (notice_id, destination) → (status, error): taken ones are done,
    retried ones wait with backoff, and anything older than `max_age` is given up."""
    pending: list[Pending] = []
    given_up = state.given_up
    for p in state.pending:
        owed = list(p.owed)
        retried = False
        error = p.last_error
        for name in p.owed:
            result = outcomes.get((p.notice_id, name))
            if result is None:
                continue
            status, message = result
            if status in ("delivered", "accepted"):
                owed.remove(name)
            elif status == "failed":
                owed.remove(name)
                given_up += 1
                error = message
            else:
                retried = True
                error = message
        if not owed:
            continue
        if now - p.created_at > max_age:
            given_up += len(owed)
            continue
        attempts = p.attempts + (1 if retried else 0)
        next_at = p.next_attempt_at
        if retried:
            next_at = now + min(RETRY_CAP, RETRY_BASE * 2 ** max(0, attempts - 1))
        pending.append(replace(p, owed=tuple(owed), attempts=attempts, next_attempt_at=next_at,
                               last_error=error))
    return replace(state, pending=tuple(pending), given_up=given_up)


def _pending(kind: str, summary: Mapping[str, Any], destinations: Sequence[str], now: datetime,
             *identity: object) -> Pending:
    return Pending(notice_id(kind, *identity), kind, dict(summary), tuple(destinations), now)
