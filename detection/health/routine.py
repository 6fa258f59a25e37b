"""The imperative shell of health: count a batch, run the checks on a timer, build the summary.

Three entry points, one per caller:

* `count_batch` / `record_batch` — the batch handler, once per batch: a census of the bodies and the
  batch's outcomes become one delta per tenant, merged into storage. A failure here is logged, never
  raised: the batch's alerts are already stored and notified, and counters are worth less than a
  retried batch.
* `health_timer` / `run_health` — the timer: checks over the stored counters, the notices they cause
  (each condition once when it starts, once when it ends), the daily heartbeat, delivery of what is
  owed, and cleanup.
* `health_summary` — `python -m detection health`: the same summary the heartbeat sends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson

from detection.ecs import verbatim_source
from detection.health import counters as names
from detection.health.aggregate import Watch, census_of_bodies, observe, tally, with_outcomes
from detection.health.checks import Evaluation, check_drift, check_silence
from detection.health.counters import Counters
from detection.health.inputs import RuleInputs, inputs_of
from detection.health.notices import HealthState, advance, claim, due, heartbeat_day_due, settle
from detection.health.store import HealthStore
from detection.health.summary import build_summary, heartbeat_notice
from detection.notify.base import Destination, HealthMessage
from detection.settings import Settings, SettingsError
from detection.sources import Limits
from detection.state.tables import EtagMismatch, StorageError, resolve_connection

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
STATE_ATTEMPTS = 5
# How long a run holds the notices it is sending; if it dies, the next run after this sends them.
LEASE = timedelta(minutes=10)
# Counters kept beyond the drift window: today is partial and yesterday is the heartbeat's day.
EXTRA_DAYS = timedelta(days=2)

# BatchReport outcome → counter name, counted from the report's per-tenant breakdown into each tenant's
# counters. Alerts are the ones this run stored (`new`), not the engine's matches: the hub delivers at
# least once, and a batch handled again finds its alerts already stored, so counting matches would
# report them twice. The breakdown holds only what the run caused, so a redelivered batch adds no
# outcome (its records are counted again: they did arrive again).
OUTCOME_COUNTERS = {
    "new": names.ALERTS, "suppressed": names.SUPPRESSED, "excepted": names.EXCEPTED,
    "overflow": names.OVERFLOW, "muted": names.MUTED, "notified": names.DELIVERED,
    "delivery_failures": names.DELIVERY_FAILED,
}
# OutboxReport outcome → counter name: what the redelivery timer delivered, gave up on or suppressed.
OUTBOX_COUNTERS = {"notified": names.DELIVERED, "failures": names.DELIVERY_FAILED,
                   "suppressed": names.SUPPRESSED}


def keep_span(settings: Settings) -> timedelta:
    return settings.drift_window + EXTRA_DAYS


def _action_renames() -> Callable[[str], str]:
    source = verbatim_source("event.action")
    renames: Mapping[str, str] = source.renames if source is not None else {}
    return lambda operation: renames.get(operation, operation)


def outcome_items(by_tenant: Mapping[str, Mapping[str, int]] | None,
                  counters: Mapping[str, str]) -> list[tuple[str | None, str, int]]:
    """A report's per-tenant outcomes as (tenant, counter name, n), for `tally`."""
    return [(tenant_id, counters[outcome], int(n)) for tenant_id, outcomes in (by_tenant or {}).items()
            for outcome, n in outcomes.items() if outcome in counters]


def batch_delta(bodies: Sequence[bytes], *, settings: Settings, now: datetime,
                inputs: Sequence[RuleInputs], report: Any = None) -> dict[str, Counters]:
    """One batch → one delta per tenant: its records, and its alerts and deliveries under the alert's
    tenant; skipped bodies belong to no tenant and go on the pipeline pseudo-tenant."""
    deltas = observe(census_of_bodies(bodies, Limits.from_settings(settings)), now=now,
                     watch=Watch.of(inputs), action_of=_action_renames())
    if report is None:
        return deltas
    skips = getattr(report, "skips", None) or {}
    outcomes = tally([*outcome_items(getattr(report, "by_tenant", None), OUTCOME_COUNTERS),
                      *((None, f"{names.SKIPPED}.{reason}", int(n)) for reason, n in skips.items())])
    return with_outcomes(deltas, outcomes)


def record_batch(store: HealthStore, bodies: Sequence[bytes], *, settings: Settings, clock: Clock,
                 rules: Sequence[Any], report: Any = None) -> int:
    """Count one batch into storage; returns rows written (0 when storage failed: logged, not raised)."""
    now = clock()
    try:
        deltas = batch_delta(bodies, settings=settings, now=now, inputs=inputs_of(rules), report=report)
        return store.add(deltas, now)
    except StorageError as exc:
        log.warning("health counters of this batch not stored: %s", exc)
        return 0


# One health store per storage account and table, opened on a worker's first batch and kept warm like
# the handler's pipeline. Counting retries storage briefly: during an outage the batch itself fails on
# the alert state and is retried, so the counters do not need the alert state's patience.
_STORES: dict[tuple[Any, str], HealthStore] = {}
_STORES_LOCK = threading.Lock()
_COUNTING_OPTIONS = {"attempts": 2, "base_delay": 0.1, "max_delay": 0.5, "connect_timeout": 2.0,
                     "read_timeout": 5.0}


def shared_store(settings: Settings) -> HealthStore:
    key = (resolve_connection(settings), settings.health_table)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = HealthStore.open(settings, **_COUNTING_OPTIONS)
        return store


def count_batch(bodies: Sequence[bytes], *, settings: Settings, clock: Clock, rules: Any,
                report: Any = None) -> int:
    """The batch handler's one call: count the batch into the shared health store, never raising."""
    try:
        store = shared_store(settings)
    except (SettingsError, StorageError) as exc:
        log.warning("health counters unavailable, this batch is not counted: %s", exc)
        return 0
    return record_batch(store, bodies, settings=settings, clock=clock,
                        rules=getattr(rules, "rules", rules), report=report)


def count_outbox(report: Any, *, settings: Settings, clock: Clock) -> int:
    """The redelivery timer's deliveries and failures under each alert's tenant, so the heartbeat
    includes what was delivered or given up on after its batch; one write per tenant (bounded like a
    batch), never raising, like `count_batch`."""
    outcomes = with_outcomes({}, tally(outcome_items(getattr(report, "by_tenant", None), OUTBOX_COUNTERS)))
    if not outcomes:
        return 0
    try:
        return shared_store(settings).add(outcomes, clock())
    except (SettingsError, StorageError) as exc:
        log.warning("health counters of this redelivery run not stored: %s", exc)
        return 0


@dataclass(frozen=True)
class Checks:
    silence: Evaluation
    drift: Evaluation


def run_checks(snapshot: Mapping[str, Counters], *, settings: Settings, now: datetime,
               rules: Sequence[Any]) -> Checks:
    return Checks(check_silence(snapshot, now, settings.silence_threshold),
                  check_drift(snapshot, inputs_of(rules), now, settings.drift_window))


def health_summary(store: HealthStore, *, settings: Settings, now: datetime, rules: Sequence[Any],
                   days: int = 1) -> dict[str, Any]:
    """The summary of the last `days` finished UTC days plus today, with the current findings."""
    checks = run_checks(store.days((now - keep_span(settings)).date(), now.date()), settings=settings,
                        now=now, rules=rules)
    first = now.date() - timedelta(days=max(0, days))
    return _summary(store, settings, now, checks, first, now.date())


def _summary(store: HealthStore, settings: Settings, now: datetime, checks: Checks, first: date,
             last: date) -> dict[str, Any]:
    return build_summary(store.days(first, last), first_day=first, last_day=last, silence=checks.silence,
                         drift=checks.drift, now=now, silence_threshold=settings.silence_threshold,
                         drift_window=settings.drift_window)


def run_health(store: HealthStore, *, settings: Settings, clock: Clock, destinations: Sequence[Destination],
               rules: Sequence[Any]) -> dict[str, Any]:
    """One timer run. Returns what it did, as JSON-ready counts for the log."""
    now = clock()
    keep = keep_span(settings)
    checks = run_checks(store.days((now - keep).date(), now.date()), settings=settings, now=now, rules=rules)
    probe = HealthMessage({})
    names_ = [d.name for d in destinations if d.accepts(probe)]
    state, etag = _decide(store, settings, now, checks, names_, keep)
    sent, state = _deliver(store, state, etag, destinations, now, settings)
    removed = store.delete_before((now - keep).date())
    return {"silent": len(checks.silence.findings), "blind": len(checks.drift.findings),
            "conditions": len(state.marks), "sent": sent, "owed": len(state.pending),
            "given_up": state.given_up, "rows_removed": removed}


def health_timer(pipeline: Any) -> dict[str, Any]:
    """The function app's health timer over the warm pipeline (its settings, rules, destinations)."""
    report = run_health(shared_store(pipeline.settings), settings=pipeline.settings, clock=pipeline.clock,
                        destinations=pipeline.destinations, rules=pipeline.rules.rules)
    log.info("health %s", orjson.dumps(report).decode())
    return report


def _decide(store: HealthStore, settings: Settings, now: datetime, checks: Checks,
            destinations: Sequence[str], keep: timedelta) -> tuple[HealthState, str]:
    """Advance the stored state by this run's findings; only one concurrent run wins each version."""
    for _ in range(STATE_ATTEMPTS):
        state, etag = store.state()
        heartbeat = None
        day = heartbeat_day_due(state, now, settings.heartbeat_enabled)
        if day is not None:
            heartbeat = (day, heartbeat_notice(_summary(store, settings, now, checks, day, day)))
        new = advance(state, [checks.silence, checks.drift], now=now, destinations=destinations,
                      forget_after=keep, heartbeat=heartbeat)
        if new == state and etag is not None:
            return state, etag
        try:
            return new, store.save_state(new, etag)
        except EtagMismatch:
            continue  # another run moved the state on: decide again from what it wrote
    raise StorageError("health state kept changing under this run; the next run will decide")


def _deliver(store: HealthStore, state: HealthState, etag: str | None, destinations: Sequence[Destination],
             now: datetime, settings: Settings) -> tuple[int, HealthState]:
    """Lease what is owed now, send it, then record the outcomes (onto a newer state if needed)."""
    for _ in range(STATE_ATTEMPTS):
        pairs = due(state, now)
        if not pairs:
            return 0, state
        leased = claim(state, pairs, until=now + LEASE)
        try:
            etag = store.save_state(leased, etag)
            state = leased
            break
        except EtagMismatch:
            state, etag = store.state()  # another run may have leased them: look again
    else:
        return 0, state
    by_name = {d.name: d for d in destinations}
    outcomes: dict[tuple[str, str], tuple[str, str | None]] = {}
    for notice, name in pairs:
        destination = by_name.get(name)
        if destination is None:
            outcomes[(notice.notice_id, name)] = ("failed", "destination no longer configured")
            continue
        outcome = destination.send(HealthMessage(dict(notice.summary)))
        outcomes[(notice.notice_id, name)] = (outcome.status, outcome.error)
    for _ in range(STATE_ATTEMPTS):
        settled = settle(state, outcomes, now=now, max_age=settings.delivery_max_age)
        try:
            store.save_state(settled, etag)
            return len(outcomes), settled
        except EtagMismatch:
            state, etag = store.state()
    log.warning("health notice outcomes not recorded; they are sent again when the lease runs out")
    return len(outcomes), state
