"""The batch handler: bodies → detect → persist → notify. One path for the Event Hub function and `replay`.

Event Hubs delivers at least once and the host checkpoints a batch even when the function fails, so the
handler is built to be run again on the same batch at any point: every alert is written first-writer-wins
on its deterministic id, all of a batch's alerts are stored before any notification is attempted, and
each notification is sent only where the alert's ledger still owes it. When Table Storage stays
unavailable through the adapter's retries the handler raises, so the Functions retry policy runs the
batch again; nothing is reported as handled that was not stored.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from detection.alerts import Alert
from detection.engine import detect
from detection.health.routine import count_batch, count_outbox
from detection.notify.base import Destination, OverflowMessage, destinations_from_settings, system_clock
from detection.rules import RuleSet, load_rules
from detection.rules.loader import Rule
from detection.settings import Settings, SettingsError
from detection.state import lifecycle
from detection.state.delivery import HANDOFF, Deliverer, Progress
from detection.state.lifecycle import OverflowPlan, Planned, StatePolicy, validate_settings
from detection.state.outbox import (
    ByTenant,
    OutboxReport,
    add_by_tenant,
    count_outcome,
    plain_by_tenant,
    redeliver,
)
from detection.state.store import AlertStore, ref_of
from detection.state.tables import Stored

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Planned status other than "new" → the BatchReport field counting alerts stored with it.
STORED_OUTCOMES = {"overflow": "overflow", "muted": "muted", "excepted": "excepted"}


@dataclass
class BatchReport:
    """What one batch did. `alerts` counts the engine's matches (excepted and overflow included);
    `new`/`duplicates` say whether each was already stored; `excepted`, `muted` and `overflow` count the
    batch's alerts of each status; `suppressed` and `notified` count what this run did, so a
    redelivered batch reports its alerts as duplicates and sends nothing.

    `by_tenant` splits the outcomes by the alert's tenant, counting only what this run caused: alerts it
    stored (`new`, and of those the `excepted`, `muted` and `overflow` ones), suppression it decided,
    sends it made. A batch the hub delivers again adds nothing there, which is what the health counters
    are built from."""

    bodies: int = 0
    records: int = 0
    skips: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    new: int = 0
    duplicates: int = 0
    suppressed: int = 0
    excepted: int = 0
    muted: int = 0
    overflow: int = 0
    notified: int = 0
    delivery_failures: int = 0
    owed: int = 0
    duration_ms: int = 0
    by_tenant: ByTenant = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["skips"] = dict(sorted(self.skips.items()))
        data["by_tenant"] = plain_by_tenant(self.by_tenant)
        return data

    def add(self, other: BatchReport) -> None:
        """Fold another batch's report into this one (replay processes long inputs batch by batch)."""
        for f in fields(self):
            if f.name == "skips":
                self.skips.update(other.skips)
            elif f.name == "by_tenant":
                add_by_tenant(self.by_tenant, other.by_tenant)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _rule_map(rules: RuleSet | Sequence[Rule]) -> dict[str, Rule]:
    return {rule.rule_id: rule for rule in getattr(rules, "rules", rules)}


def handle_batch(
    bodies: Sequence[bytes],
    *,
    settings: Settings,
    clock: Clock,
    store: AlertStore,
    destinations: Sequence[Destination],
    rules: RuleSet | Sequence[Rule],
    policy: StatePolicy | None = None,
) -> BatchReport:
    """Handle one batch of Event Hub bodies; raises StorageUnavailable when the state cannot be written."""
    started = time.monotonic()
    policy = policy or validate_settings(settings)
    detection = detect(bodies, rules, settings)
    stats = detection.stats
    report = BatchReport(bodies=stats.bodies, records=stats.records, skips=Counter(stats.skips),
                         alerts=len(detection.alerts) + len(detection.overflow) + len(detection.excepted))
    now = clock()
    plan = lifecycle.plan_batch(detection.alerts, detection.overflow, detection.excepted,
                                rules=_rule_map(rules), overrides=policy.overrides, windows=policy.windows,
                                now=now)
    deliverer = Deliverer(store, destinations, clock=clock, max_age=policy.max_age)

    # 1. Store every alert of the batch before notifying anyone.
    pending: list[tuple[str, Stored]] = []
    overflow_owner: dict[str, str | None] = {}
    for planned in plan.alerts:
        stored, created = _persist(store, planned, now)
        tenant_id = planned.alert.tenant_id
        count_outcome(report, tenant_id, "new", int(created))
        report.duplicates += int(not created)
        if planned.status == "new":
            pending.append((tenant_id, stored))
            continue
        # An alert found already stored was counted, for its tenant, by the run that stored it.
        count_outcome(report, tenant_id, STORED_OUTCOMES[planned.status], per_tenant=created)
        if planned.status == "overflow":
            overflow_owner[planned.alert.alert_id] = stored.entity.get("notice_id")
        elif planned.status == "excepted":
            log.info("excepted: rule %s matched record %s (tenant %s) but an exception query applies; "
                     "stored as excepted, not notified", planned.alert.rule_id, planned.alert.record_id,
                     planned.alert.tenant_id)

    # 2. Decide suppression and notify, in batch order (the first alert of a window is its head).
    for tenant_id, stored in pending:
        progress = deliverer.advance(stored)
        count_outcome(report, tenant_id, "suppressed", int(progress.role == "member"))
        _count_sends(report, tenant_id, progress)

    # 3. One summary per rule (and tenant) for the alerts past max_signals this batch stored.
    for overflow in plan.overflow:
        progress = _notify_overflow(deliverer, overflow, overflow_owner, now)
        _count_sends(report, overflow.tenant_id, progress)

    # 4. Source health: one counters delta per tenant for the whole batch; never fails the batch.
    count_batch(bodies, settings=settings, clock=clock, rules=rules, report=report)
    report.duration_ms = int((time.monotonic() - started) * 1000)
    log.debug("batch: %s", report.to_dict())  # the host shell logs the one structured line per batch
    return report


def _count_sends(report: BatchReport, tenant_id: str, progress: Progress) -> None:
    count_outcome(report, tenant_id, "notified", progress.notified)
    count_outcome(report, tenant_id, "delivery_failures", progress.failures)
    report.owed += int(progress.owed)


def _persist(store: AlertStore, planned: Planned, now: datetime) -> tuple[Stored, bool]:
    """The stored entity for a planned alert, and whether this call created it."""
    entity = store.alert_entity(planned.alert, status=planned.status, when=planned.when, now=now,
                                group=planned.group, notice=planned.notice)
    ref = ref_of(entity)
    if planned.status == "new":
        existing = store.get(ref)
        if existing is not None:
            return existing, False
        # The index row goes first: if we die between the two writes, the outbox finds the alert.
        store.mark_owed(ref, now + HANDOFF, now)
    created = store.create(entity)
    if created is not None:
        return created, True
    existing = store.get(ref)
    if existing is None:  # created and deleted in between: only retention does that, days later
        raise RuntimeError(f"alert {planned.alert.alert_id} vanished while being stored")
    return existing, False


def _notify_overflow(deliverer: Deliverer, plan: OverflowPlan, owner: Mapping[str, str | None],
                     now: datetime) -> Progress:
    """The notice covers the overflow alerts assigned to it when stored: the ones this batch created,
    or a previous run of the same batch did. Alerts some other batch stored first are in that batch's
    notice, so overlapping batches never count an alert twice."""
    ours: list[Alert] = [a for a in plan.alerts if owner.get(a.alert_id) == plan.notice]
    if not ours:
        return Progress()
    times = sorted(a.event_time for a in ours if a.event_time)
    first = ours[0]
    message = OverflowMessage(rule_id=first.rule_id, rule_name=first.rule_name, severity=first.severity,
                              tenant_id=first.tenant_id, count=len(ours),
                              first_event_time=times[0] if times else "",
                              last_event_time=times[-1] if times else "")
    log.warning("rule %s matched %d more records than its max_signals in one batch; stored as overflow",
                first.rule_id, len(ours))
    ledger = lifecycle.new_ledger([d.name for d in deliverer.destinations if d.accepts(message)], now)
    entity = deliverer.store.notice_entity(
        tenant_id=first.tenant_id, notice=plan.notice, notice_kind="overflow", ledger=ledger, now=now,
        body={f.name: getattr(message, f.name) for f in fields(message)})
    _, progress = deliverer.deliver_new(entity)
    return progress


def _check_overrides(policy: StatePolicy, ruleset: RuleSet) -> None:
    """An override for a rule that is not loaded (a mistyped id) would silently change nothing."""
    loaded = {rule.rule_id for rule in ruleset.rules}
    unknown = sorted(set(policy.overrides) - loaded)
    if unknown:
        raise SettingsError(f"setting SUPPRESSION_OVERRIDES: no loaded rule has the id "
                            f"{', '.join(map(repr, unknown))}")


@dataclass
class Pipeline:
    """What one process loads once and keeps warm: settings, rules, the store and the destinations."""

    settings: Settings
    policy: StatePolicy
    rules: RuleSet
    store: AlertStore
    destinations: list[Destination]
    clock: Clock = system_clock

    def handle(self, bodies: Sequence[bytes]) -> BatchReport:
        return handle_batch(bodies, settings=self.settings, clock=self.clock, store=self.store,
                            destinations=self.destinations, rules=self.rules, policy=self.policy)

    def deliverer(self) -> Deliverer:
        return Deliverer(self.store, self.destinations, clock=self.clock, max_age=self.policy.max_age)

    def redeliver(self, *, limit: int = 500) -> OutboxReport:
        report = redeliver(self.deliverer(), limit=limit)
        count_outbox(report, settings=self.settings, clock=self.clock)
        return report

    def cleanup(self, *, limit: int = 1000) -> dict[str, int]:
        return self.store.cleanup(self.clock(), limit=limit)

    def close(self) -> None:
        for destination in self.destinations:
            destination.close()


def build_pipeline(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    store: AlertStore | None = None,
    destinations: Sequence[Destination] | None = None,
    console_stream: Any = None,
) -> Pipeline:
    """Validate the settings, load the rules, open the store (creating tables) and the destinations.

    Raises SettingsError or RuleError at start-up, naming the setting or rule file, rather than in
    the middle of a batch.
    """
    policy = validate_settings(settings)
    ruleset = load_rules(settings.rules_dir)
    for skipped in ruleset.skipped:
        log.warning("rule skipped: %s (%s): %s", skipped.name, skipped.path.name, skipped.reason)
    _check_overrides(policy, ruleset)
    if destinations is None:
        guides = {rule.rule_id: rule.guide for rule in ruleset.rules}
        destinations = destinations_from_settings(settings, clock=clock, guides=guides,
                                                  console_stream=console_stream)
    return Pipeline(settings=settings, policy=policy, rules=ruleset,
                    store=store or AlertStore.open(settings), destinations=list(destinations), clock=clock)
