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
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from detection.state.delivery import Deliverer
from detection.state.store import Ref
from detection.state.tables import Stored

log = logging.getLogger(__name__)

ORPHAN_GRACE = timedelta(hours=1)


@dataclass
class OutboxReport:
    due: int = 0
    advanced: int = 0
    notified: int = 0
    failures: int = 0
    still_owed: int = 0
    dropped: int = 0
    duration_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        report.advanced += 1
        report.notified += progress.notified
        report.failures += progress.failures
        report.still_owed += int(progress.owed)
    report.duration_ms = int((time.monotonic() - started) * 1000)
    if report.due:
        log.info("outbox: %s", report.to_dict())
    return report


def _older_than(row: Stored, when: Any) -> bool:
    marked = row.entity.get("marked_at")
    return marked is None or marked < when
