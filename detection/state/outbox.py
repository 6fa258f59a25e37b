"""The outbox: finish every notification still owed, on a timer (and `python -m detection redeliver`).

It reads only the owed index partition (rows whose next attempt is due), and hands each deliverable to
the same `Deliverer.advance` the batch handler uses: an alert whose suppression role was never decided
(its instance died) gets decided, a destination still owed gets sent with the growing delays of
`notify.base.next_attempt_delay`, and past DELIVERY_MAX_AGE it is marked failed, stays listed, and a
delivery-failed notice goes to the other destinations. A destination that already has the message is
never sent it again. Index rows whose deliverable no longer owes anything (its failures announced
too) are dropped; rows whose deliverable does not exist are dropped only after a grace period, since
the handler writes the index row just before it creates the alert.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from detection.state.delivery import Deliverer
from detection.state.store import Ref
from detection.state.tables import Stored

log = logging.getLogger(__name__)

ORPHAN_GRACE = timedelta(hours=1)

# Outcome name (a report's field) → count, per tenant id: what a batch or a sweep did for each tenant,
# so health can count a tenant's alerts and deliveries in that tenant's own counters.
ByTenant = dict[str, Counter[str]]


def count_outcome(report: Any, tenant_id: str, outcome: str, n: int = 1, *, per_tenant: bool = True) -> None:
    """Add `n` to the report's `outcome` field and, unless `per_tenant` is False, to the tenant's share.

    The batch handler passes False for what a batch the hub delivered again finds already done: its
    batch-wide fields still describe the batch, but the breakdown holds only what this run caused, so
    the health counters built from it never count an alert twice."""
    if not n:
        return
    setattr(report, outcome, getattr(report, outcome) + n)
    if per_tenant:
        report.by_tenant.setdefault(tenant_id, Counter())[outcome] += n


def add_by_tenant(into: ByTenant, other: Mapping[str, Mapping[str, int]]) -> None:
    for tenant_id, outcomes in other.items():
        into.setdefault(tenant_id, Counter()).update(outcomes)


def plain_by_tenant(by_tenant: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """JSON-ready and stable: tenants and outcomes sorted, zero counts left out."""
    return {tenant_id: {name: n for name, n in sorted(outcomes.items()) if n}
            for tenant_id, outcomes in sorted(by_tenant.items())}


@dataclass
class OutboxReport:
    """What one sweep did; `by_tenant` splits `notified`, `failures` and `suppressed` by the tenant of
    the alert or notice they were for."""

    due: int = 0
    advanced: int = 0
    notified: int = 0
    failures: int = 0
    suppressed: int = 0
    still_owed: int = 0
    dropped: int = 0
    duration_ms: int = 0
    by_tenant: ByTenant = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["by_tenant"] = plain_by_tenant(self.by_tenant)
        return data


def redeliver(deliverer: Deliverer, *, limit: int = 500) -> OutboxReport:
    """One sweep over due index rows (at most `limit`, oldest schedule first is not guaranteed)."""
    started = time.monotonic()
    store, now = deliverer.store, deliverer.clock()
    report = OutboxReport()
    for row in store.owed(now, limit=limit):
        report.due += 1
        ref = Ref(str(row.entity["target_pk"]), str(row.entity["target_rk"]))
        target = store.get(ref)
        if target is None:
            if _older_than(row, now - ORPHAN_GRACE):
                report.dropped += int(store.clear_owed(ref, row.etag))
            continue
        if deliverer.settled(target.entity):
            report.dropped += int(store.clear_owed(ref, row.etag))
            continue
        progress = deliverer.advance(target)
        tenant_id = str(target.entity.get("tenant_id") or "")
        report.advanced += 1
        # An alert whose instance died before deciding its role can turn out to be suppressed here.
        count_outcome(report, tenant_id, "suppressed", int(progress.role == "member"))
        count_outcome(report, tenant_id, "notified", progress.notified)
        count_outcome(report, tenant_id, "failures", progress.failures)
        report.still_owed += int(progress.owed)
    report.duration_ms = int((time.monotonic() - started) * 1000)
    if report.due:
        log.info("outbox: %s", report.to_dict())
    return report


def _older_than(row: Stored, when: Any) -> bool:
    marked = row.entity.get("marked_at")
    return marked is None or marked < when
