"""Moving one stored deliverable forward: decide its suppression role, then send what it still owes.

The batch handler and the outbox run this same routine, so a batch that is redelivered, an instance
that died mid-batch and the timer that sweeps owed notifications all finish the work the same way.
Every step reads the entity, decides (pure, in `lifecycle`) and writes back with the ETag it read; a
conflicting writer only makes us read again. Nothing is decided from "I was the one who created it",
so a retried request whose first attempt did land cannot make an alert skip its notification.

Per destination: claim (lease + token, written with the ETag), send, record the outcome. A terminal
entry (delivered, accepted, failed) is never sent again; a pending one with a live lease belongs to
whoever holds the lease.
"""

from __future__ import annotations

import logging
import random as _random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from detection.alerts import Alert
from detection.notify.base import (
    AlertMessage,
    DeliveryFailedMessage,
    Destination,
    Message,
    Outcome,
    OverflowMessage,
    next_attempt_delay,
)
from detection.state import codec, keys, lifecycle
from detection.state.lifecycle import Group
from detection.state.store import CONFLICT_ATTEMPTS, AlertStore, Contention, Ref, backoff, ref_of
from detection.state.tables import EtagMismatch, Stored

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Longer than the slowest send (bounded retries and timeouts) to every destination of one alert.
LEASE = timedelta(minutes=10)
# How long the outbox leaves a just-stored deliverable to the instance storing it before taking over
# (the instance normally finishes within seconds; if it died, the outbox finishes its work).
HANDOFF = timedelta(minutes=2)


@dataclass
class Progress:
    """What advancing one deliverable did, for the batch report."""

    role: str | None = None  # "head", "member" or "solo" when decided by this call
    notified: int = 0  # sends that ended delivered or accepted
    failures: int = 0  # sends that ended failed or to be retried
    owed: bool = False  # still owes a destination (the outbox will retry)


class Deliverer:
    def __init__(self, store: AlertStore, destinations: Sequence[Destination], *, clock: Clock,
                 max_age: timedelta, lease: timedelta = LEASE,
                 random: Callable[[], float] = _random.random) -> None:
        self.store = store
        self.destinations = list(destinations)
        self.by_name = {d.name: d for d in self.destinations}
        self.clock = clock
        self.max_age = max_age
        self.lease = lease
        self.random = random

    def advance(self, stored: Stored) -> Progress:
        progress = Progress()
        current: Stored | None = stored
        for attempt in range(CONFLICT_ATTEMPTS):
            if current is None:
                return progress
            try:
                current = self._decide(current, progress)
                if current is not None:
                    self._deliver(current, progress)
                return progress
            except EtagMismatch:
                current = self.store.get(ref_of(current.entity))
                backoff(attempt)
        raise Contention(f"{ref_of(stored.entity)}: too many concurrent updates")

    # ---- suppression role ----

    def _decide(self, stored: Stored, progress: Progress) -> Stored | None:
        entity = stored.entity
        if entity.get("kind") != "alert" or entity.get("role") != "undecided":
            return stored
        now = self.clock()
        alert = codec.alert_from_entity(entity)
        series = entity.get("group_series")
        role, head = "solo", None
        if series:
            start = entity["group_window"]
            group = Group(str(series), (), start, entity.get("group_end") or start)
            role, head = self.store.join_group(group, alert.alert_id, alert.tenant_id, alert.rule_id, now)
        if role == "member":
            self.store.update(stored, {"role": "member", "status": "suppressed", "head_alert_id": head,
                                       "owed": False}, now)
            self.store.clear_owed(ref_of(entity))
            progress.role = "member"
            return None
        count = self.store.take_unreported(str(series), alert.alert_id, now) if series else 0
        message = AlertMessage(alert, suppressed_count=count)
        # Destinations whose minimum severity is above the alert's, kept so `alerts show` says why.
        below = {d.name: d.min_severity for d in self.destinations if not d.accepts(message)}
        ledger = lifecycle.new_ledger([d.name for d in self.destinations if d.name not in below], now)
        changes: dict[str, Any] = {
            "role": role, "suppressed_count": count, "ledger": codec.dumps(ledger),
            "owed": lifecycle.owes(ledger), "next_attempt_at": now,
            "status": lifecycle.decided_status(ledger, below)}
        if below:
            changes["below_min_severity"] = codec.dumps(below)
        updated = self.store.update(stored, changes, now)
        progress.role = role
        return updated

    # ---- sending ----

    def _deliver(self, stored: Stored, progress: Progress) -> None:
        now = self.clock()
        ledger = codec.loads(stored.entity.get("ledger"), {})
        names = lifecycle.due(ledger, now)
        if names:
            token = uuid.uuid4().hex
            claimed = lifecycle.claim(ledger, names, now=now, lease=self.lease, token=token)
            stored = self.store.update(stored, {"ledger": codec.dumps(claimed)}, now)
            message, problem = self._message(stored.entity)
            for name in names:
                destination = self.by_name.get(name)
                if message is None:
                    outcome = Outcome("failed", None, problem)
                elif destination is None:
                    outcome = Outcome("retry", None, f"destination {name} is not configured in this instance")
                else:
                    outcome = self._send(destination, message)
                if outcome.done:
                    progress.notified += 1
                else:
                    progress.failures += 1
                stored = self._record(stored, name, outcome, token)
        self._settle(stored, progress, changed=bool(names) or progress.role is not None)

    @staticmethod
    def _send(destination: Destination, message: Message) -> Outcome:
        """Destinations report every ending as an Outcome; a bug that raises is one more retry, not a
        lost batch (the type only: an exception's text may quote a URL)."""
        try:
            return destination.send(message)
        except Exception as exc:
            log.error("%s: send raised %s (a bug in the destination; retried later)", destination.name,
                      type(exc).__name__)
            return Outcome("retry", None, f"{destination.name} raised {type(exc).__name__}")

    def _record(self, stored: Stored, name: str, outcome: Outcome, token: str) -> Stored:
        """Write one send's outcome, re-reading on conflict (other destinations' writers)."""
        current: Stored | None = stored
        for attempt in range(CONFLICT_ATTEMPTS):
            if current is None:
                raise EtagMismatch("deliverable vanished while being sent")
            now = self.clock()
            ledger = codec.loads(current.entity.get("ledger"), {})
            attempts = int(ledger.get(name, {}).get("attempts") or 1)
            delay = next_attempt_delay(attempts, retry_after=outcome.retry_after, random=self.random)
            created = current.entity.get("created_at") or now
            updated = lifecycle.record_outcome(ledger, name, outcome, token=token, now=now, created=created,
                                               max_age=self.max_age, delay=delay)
            try:
                return self.store.update(current, self._ledger_changes(current.entity, updated), now)
            except EtagMismatch:
                current = self.store.get(ref_of(current.entity))
                backoff(attempt)
        raise Contention(f"{ref_of(stored.entity)}: too many concurrent updates")

    @staticmethod
    def _ledger_changes(entity: dict[str, Any], ledger: lifecycle.Ledger) -> dict[str, Any]:
        changes: dict[str, Any] = {"ledger": codec.dumps(ledger), "owed": lifecycle.owes(ledger)}
        next_time = lifecycle.next_due(ledger)
        if next_time is not None:
            changes["next_attempt_at"] = next_time
        if entity.get("kind") == "notice" or entity.get("role") in ("head", "solo"):
            changes["status"] = lifecycle.delivery_status(ledger)
        return changes

    def _settle(self, stored: Stored, progress: Progress, *, changed: bool) -> None:
        """Point the owed index at the next attempt, tell the other destinations about any destination
        that will never get this alert or overflow summary, and only then drop the index row: until the
        notices exist, the row is what brings the outbox back to send them if this instance dies or
        storage fails here.
        A deliverable this call did not change needs no index write (a redelivered batch costs none)."""
        now = self.clock()
        ref = ref_of(stored.entity)
        ledger = codec.loads(stored.entity.get("ledger"), {})
        if lifecycle.owes(ledger):
            self.store.mark_owed(ref, lifecycle.next_due(ledger) or now, now)
            progress.owed = True
        if _announced(stored.entity) and self._notice_failures(stored, ledger, now):
            changed = True
        if changed and not lifecycle.owes(ledger):
            self.store.clear_owed(ref)

    def settled(self, entity: Mapping[str, Any]) -> bool:
        """Nothing left to do for this deliverable: its role is decided, no destination is owed, and
        every destination that failed has been announced to the others."""
        if entity.get("owed") or entity.get("role") == "undecided":
            return False
        return not _announced(entity) or not _unnoticed(entity)

    def _notice_failures(self, stored: Stored, ledger: lifecycle.Ledger, now: datetime) -> bool:
        """Send the delivery-failed notice of every newly failed destination; True if there was one."""
        noticed = set(codec.loads(stored.entity.get("failures_noticed"), []))
        unnoticed = sorted(_unnoticed(stored.entity))
        subject, problem = _subject(stored.entity)
        for name in unnoticed:
            error = str(ledger[name].get("error") or "delivery failed")
            log.warning("%s was not delivered to %s: %s", _described(subject, stored.entity), name, error)
            if subject is None:
                log.error("%s: no delivery-failed notice possible: %s", ref_of(stored.entity), problem)
            else:
                message = DeliveryFailedMessage(subject, name, error)
                others = [d.name for d in self.destinations if d.name != name and d.accepts(message)]
                if others:
                    ref = ref_of(stored.entity)
                    # alert_pk/alert_rk name the undelivered deliverable, an alert or an overflow notice.
                    notice = self.store.notice_entity(
                        tenant_id=subject.tenant_id, notice=keys.notice_id("failed", ref.partition, ref.row,
                                                                           name),
                        notice_kind="delivery_failed", now=now, ledger=lifecycle.new_ledger(others, now),
                        body={"alert_pk": ref.partition, "alert_rk": ref.row, "destination": name,
                              "error": message.error})
                    self.deliver_new(notice)
            noticed.add(name)
            stored = self.store.update(stored, {"failures_noticed": codec.dumps(sorted(noticed))}, now)
        return bool(unnoticed)

    def deliver_new(self, entity: dict[str, Any]) -> tuple[bool, Progress]:
        """Store a new deliverable (index row first) and advance it; (created?, progress)."""
        now = self.clock()
        ref = ref_of(entity)
        existing = self.store.get(ref)
        if existing is None:
            if entity.get("owed"):
                self.store.mark_owed(ref, now + HANDOFF, now)
            created = self.store.create(entity)
            if created is not None:
                return True, self.advance(created)
            existing = self.store.get(ref)
            if existing is None:
                raise EtagMismatch(f"{ref}: created elsewhere and gone again")
        return False, self.advance(existing)

    # ---- messages from entities ----

    def _message(self, entity: dict[str, Any]) -> tuple[Message | None, str]:
        """The message a deliverable sends, or None and why it cannot be built (never on a retry either)."""
        if entity.get("kind") == "alert":
            return alert_message(entity), ""
        if entity.get("notice_kind") == "overflow":
            return _overflow(entity)
        body = codec.loads(entity.get("message"), {})
        target = self.store.get(Ref(str(body.get("alert_pk")), str(body.get("alert_rk"))))
        if target is None:
            return None, "the alert or summary this notice is about is no longer stored"
        subject, problem = _subject(target.entity)
        if subject is None:
            return None, problem
        return DeliveryFailedMessage(subject, str(body.get("destination")), str(body.get("error"))), ""


def alert_message(entity: dict[str, Any]) -> AlertMessage:
    """The message a stored alert is notified with: the alert and the suppressed count it reports."""
    return AlertMessage(codec.alert_from_entity(entity), int(entity.get("suppressed_count") or 0))


def _announced(entity: Mapping[str, Any]) -> bool:
    """Deliverables whose failed destinations are announced to the others: alerts, and overflow
    summaries (each stands in for alerts that have no notification of their own). A delivery-failed
    notice is not: a notice about a notice could go back and forth between two failing destinations."""
    return entity.get("kind") == "alert" or entity.get("notice_kind") == "overflow"


def _subject(entity: Mapping[str, Any]) -> tuple[Alert | OverflowMessage | None, str]:
    """What an alert or overflow notice is about, or None and why it cannot be read back."""
    if entity.get("kind") == "alert":
        return codec.alert_from_entity(dict(entity)), ""
    if entity.get("notice_kind") == "overflow":
        return _overflow(entity)
    return None, f"a {entity.get('notice_kind') or 'notice'} notice has no subject of its own"


def _overflow(entity: Mapping[str, Any]) -> tuple[OverflowMessage | None, str]:
    try:
        return OverflowMessage(**codec.loads(entity.get("message"), {})), ""
    except TypeError:
        return None, "the stored overflow notice is unreadable"


def _described(subject: Alert | OverflowMessage | None, entity: Mapping[str, Any]) -> str:
    """How the log names what went undelivered: ids and rule, never a value from the record."""
    if isinstance(subject, Alert):
        return f"alert {subject.alert_id} (rule {subject.rule_id}, record {subject.record_id})"
    if isinstance(subject, OverflowMessage):
        return f"overflow summary {entity.get('RowKey')} ({subject.count} alerts of rule {subject.rule_id})"
    return str(ref_of(entity))


def _unnoticed(entity: Mapping[str, Any]) -> set[str]:
    ledger = codec.loads(entity.get("ledger"), {})
    return lifecycle.failed(ledger) - set(codec.loads(entity.get("failures_noticed"), []))
