"""The health counters of one tenant: how much arrived, from where, and what came of it.

Counters are a commutative monoid: a batch's delta and a stored total have the same shape, and `merge`
adds them in any order. That is what lets many batches, on many instances, fold their deltas into one
stored row with optimistic concurrency and no lost increments — a conflict only means "merge again onto
the newer row". Nothing here knows about storage; `to_plain`/`from_plain` give the JSON-ready form the
adapter stores.

Times are arrival times (the clock of the batch that carried the records), not event times: silence and
drift are about whether the pipeline still receives a kind of record, and Microsoft 365 records can be
days late, so their own timestamps would make a live source look dead and a dead one look alive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Named integer counters. Unknown names from stored rows are kept (a newer version may add some).
RECORDS = "records"
ALERTS = "alerts"
SUPPRESSED = "suppressed"
EXCEPTED = "excepted"
OVERFLOW = "overflow"
MUTED = "muted"
DELIVERED = "delivered"
DELIVERY_FAILED = "delivery_failed"
DELIVERY_RETRIED = "delivery_retried"
SKIPPED = "skipped"  # per reason as "skipped.<reason>", on the pipeline pseudo-tenant

# Records that cannot be attributed to a tenant (skipped bodies) are counted on this pseudo-tenant.
PIPELINE_TENANT = "_pipeline"

# Bounds that keep one stored row far below Table Storage's 64 KiB per string property, whatever the
# stream contains: names are cut, and past MAX_KEYS new names in one map fold into OTHER.
MAX_NAME_CHARS = 80
MAX_KEYS = 200
OTHER = "(other)"


@dataclass(frozen=True)
class Seen:
    """How often and when one kind of record (a workload, an operation family, an operation) arrived.

    `since` is when we started watching it (for a workload: its first record; for an operation a rule
    needs: the first batch that looked for it, seen or not); `last` is its latest arrival, or None when
    it has never arrived. Drift is only claimed for something watched for the whole window.
    """

    count: int = 0
    since: datetime | None = None
    last: datetime | None = None

    def merge(self, other: Seen) -> Seen:
        return Seen(self.count + other.count, _min(self.since, other.since), _max(self.last, other.last))

    def to_plain(self) -> list[Any]:
        return [self.count, to_iso(self.since), to_iso(self.last)]

    @classmethod
    def from_plain(cls, value: Any) -> Seen:
        if not isinstance(value, list) or len(value) != 3:
            raise ValueError(f"expected [count, since, last], got {value!r}")
        count, since, last = value
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"count must be a whole number >= 0, got {count!r}")
        return cls(count, parse_time(since), parse_time(last))


@dataclass(frozen=True)
class Counters:
    """One tenant's counters over some span of time (one batch, one day, or a sum of days)."""

    tenant_id: str
    counts: Mapping[str, int] = field(default_factory=dict)
    workloads: Mapping[str, Seen] = field(default_factory=dict)
    families: Mapping[str, Seen] = field(default_factory=dict)
    operations: Mapping[str, Seen] = field(default_factory=dict)

    def merge(self, other: Counters) -> Counters:
        if other.tenant_id != self.tenant_id:
            raise ValueError(f"cannot merge counters of {other.tenant_id!r} into {self.tenant_id!r}")
        counts = dict(self.counts)
        for name, n in other.counts.items():
            counts[name] = counts.get(name, 0) + n
        return Counters(self.tenant_id, counts, _merge_seen(self.workloads, other.workloads),
                        _merge_seen(self.families, other.families),
                        _merge_seen(self.operations, other.operations))

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    @property
    def is_empty(self) -> bool:
        return not (any(self.counts.values()) or self.workloads or self.families or self.operations)

    def to_plain(self) -> dict[str, Any]:
        """JSON-ready maps, one per kind, as the storage adapter keeps them."""
        return {
            "counts": dict(self.counts),
            "workloads": {k: v.to_plain() for k, v in self.workloads.items()},
            "families": {k: v.to_plain() for k, v in self.families.items()},
            "operations": {k: v.to_plain() for k, v in self.operations.items()},
        }

    @classmethod
    def from_plain(cls, tenant_id: str, plain: Mapping[str, Any]) -> Counters:
        """The inverse of `to_plain`; raises ValueError naming the part that is malformed."""
        counts = plain.get("counts") or {}
        if not isinstance(counts, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
            raise ValueError("counts must map names to whole numbers")
        maps = {}
        for kind in ("workloads", "families", "operations"):
            value = plain.get(kind) or {}
            if not isinstance(value, dict):
                raise ValueError(f"{kind} must be an object")
            try:
                maps[kind] = {str(k): Seen.from_plain(v) for k, v in value.items()}
            except ValueError as exc:
                raise ValueError(f"{kind}: {exc}") from None
        return cls(tenant_id, dict(counts), **maps)


def total(counters: Mapping[str, Counters] | list[Counters]) -> Counters:
    """Every tenant's counters added into one, under the pseudo-tenant "*" (for summaries)."""
    items = counters.values() if isinstance(counters, Mapping) else counters
    result = Counters("*")
    for c in items:
        result = result.merge(Counters("*", c.counts, c.workloads, c.families, c.operations))
    return result


def merge_by_tenant(parts: list[Counters]) -> dict[str, Counters]:
    """Rows of several days or shards folded into one Counters per tenant."""
    merged: dict[str, Counters] = {}
    for part in parts:
        current = merged.get(part.tenant_id)
        merged[part.tenant_id] = part if current is None else current.merge(part)
    return merged


def bounded_name(name: object) -> str:
    """A map key from record data: a string, never empty, never longer than MAX_NAME_CHARS."""
    text = name if isinstance(name, str) else "" if name is None else str(name)
    text = text.strip()[:MAX_NAME_CHARS]
    return text or "(none)"


def _merge_seen(a: Mapping[str, Seen], b: Mapping[str, Seen]) -> dict[str, Seen]:
    out = dict(a)
    for name, seen in b.items():
        if name not in out and len(out) >= MAX_KEYS:
            name = OTHER
        current = out.get(name)
        out[name] = seen if current is None else current.merge(seen)
    return out


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def to_iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected an ISO-8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"time without a zone: {value!r}")
    return parsed
