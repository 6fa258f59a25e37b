"""Health counters and the health routine's state in Table Storage (the `health` table).

Layout (keys from `state.keys`):

    counters    PK tenant key, RK "d-<YYYYMMDD>-<shard>": one tenant's counters of one UTC day, as JSON
                maps (counts, workloads, families, operations) plus tenant_id and day. Each batch merges
                its one delta per tenant into a row of the day: read, add, write back only if the ETag
                is unchanged, else read again and re-add — so concurrent batches never lose an increment.
                The shard (a few rows per tenant and day, one picked at random per write) spreads
                concurrent writers so they rarely collide; readers add the shards up.
    state       PK "health", RK "state": the HealthState of `notices` (what was notified, what is owed),
                written with its ETag so two timer runs never both win the same transition.

Day rows are kept for the drift window plus two days and then deleted by the routine.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from detection.health.counters import Counters, merge_by_tenant
from detection.health.notices import HealthState
from detection.settings import Settings
from detection.state import codec, keys
from detection.state.store import CONFLICT_ATTEMPTS, Contention, backoff
from detection.state.tables import EtagMismatch, Stored, Tables

log = logging.getLogger(__name__)

HEALTH = "health"
STATE_PARTITION = "health"
STATE_ROW = "state"
DAY_PREFIX = "d-"
SHARDS = 4
MAPS = ("counts", "workloads", "families", "operations")
MAP_CHUNKS = 2     # per map: 60 000 UTF-16 units, far above what the bounded maps can reach
STATE_CHUNKS = 10  # 300 000 units: marks and a bounded list of owed notices


def day_row(day: date, shard: int) -> str:
    return f"{DAY_PREFIX}{day:%Y%m%d}-{shard}"


class HealthStore:
    """Health rows over `Tables`: the only place that knows the layout above."""

    def __init__(self, tables: Tables, *, shards: int = SHARDS) -> None:
        self.tables = tables
        self.shards = max(1, shards)

    @classmethod
    def open(cls, settings: Settings, *, create_tables: bool = True, **table_options: Any) -> HealthStore:
        keys.check_table_name("HEALTH_TABLE", settings.health_table)
        tables = Tables.open(settings, {HEALTH: settings.health_table}, **table_options)
        if create_tables:
            tables.ensure_tables()
        return cls(tables)

    # ---- counters ----

    def add(self, deltas: Mapping[str, Counters], now: datetime) -> int:
        """Merge each tenant's delta into today's row; returns how many rows were written."""
        written = 0
        for tenant, delta in sorted(deltas.items()):
            if delta.is_empty:
                continue
            shard = random.randrange(self.shards)  # noqa: S311 - spreading writers, not a secret
            self._merge(tenant, delta, now.date(), shard)
            written += 1
        return written

    def _merge(self, tenant: str, delta: Counters, day: date, shard: int) -> None:
        partition, row = keys.tenant_key(tenant), day_row(day, shard)
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            stored = self.tables.get(HEALTH, partition, row)
            if stored is None:
                if self.tables.create(HEALTH, self._entity(partition, row, tenant, day, delta)) is not None:
                    return
            else:
                merged = _counters_of(stored, tenant).merge(delta)
                try:
                    self.tables.update(HEALTH, self._entity(partition, row, tenant, day, merged),
                                       stored.etag, merge=False)
                    return
                except EtagMismatch:
                    pass
            backoff(attempt)
        raise Contention(f"health counters of one tenant changed {CONFLICT_ATTEMPTS} times while merging")

    @staticmethod
    def _entity(partition: str, row: str, tenant: str, day: date, counters: Counters) -> dict[str, Any]:
        entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row, "kind": "counters",
                                  "tenant_id": codec.clip(tenant), "day": day.isoformat()}
        plain = counters.to_plain()
        for name in MAPS:
            codec.put_document(entity, name, plain[name], MAP_CHUNKS)
        codec.check_limits(entity)
        return entity

    def days(self, first: date, last: date) -> dict[str, Counters]:
        """Every tenant's counters of the UTC days first..last (inclusive), shards and days added up."""
        filter_ = "RowKey ge @lo and RowKey lt @hi"
        rows = self.tables.query(HEALTH, filter_, {"lo": day_row(first, 0)[:-2],
                                                   "hi": day_row(last + timedelta(days=1), 0)[:-2]})
        parts = []
        for stored in rows:
            tenant = str(stored.entity.get("tenant_id") or "")
            try:
                parts.append(_counters_of(stored, tenant))
            except ValueError as exc:
                # One unreadable row must not hide every other tenant's health; say which it was.
                log.warning("health counters row %s/%s unreadable: %s", stored.entity.get("PartitionKey"),
                            stored.entity.get("RowKey"), exc)
        return merge_by_tenant(parts)

    def delete_before(self, day: date, *, limit: int = 1000) -> int:
        """Remove day rows older than `day` (the routine's retention); returns how many went."""
        filter_ = "RowKey ge @lo and RowKey lt @hi"
        old = list(self.tables.query(HEALTH, filter_, {"lo": DAY_PREFIX, "hi": day_row(day, 0)[:-2]},
                                     select=["PartitionKey", "RowKey"], limit=limit))
        return sum(self.tables.delete(HEALTH, str(s.entity["PartitionKey"]), str(s.entity["RowKey"]))
                   for s in old)

    # ---- the routine's state ----

    def state(self) -> tuple[HealthState, str | None]:
        """The stored state and its ETag (a fresh state and None when there is none yet)."""
        stored = self.tables.get(HEALTH, STATE_PARTITION, STATE_ROW)
        if stored is None:
            return HealthState(), None
        plain = codec.get_document(stored.entity, "state")
        return HealthState.from_plain(plain), stored.etag

    def save_state(self, state: HealthState, etag: str | None) -> str:
        """Write `state` only over the version read (`etag`), or create it; raises EtagMismatch."""
        entity: dict[str, Any] = {"PartitionKey": STATE_PARTITION, "RowKey": STATE_ROW, "kind": "state"}
        codec.put_document(entity, "state", state.to_plain(), STATE_CHUNKS)
        if entity.get("state_truncated"):
            raise ValueError("health state too large to store; this is a bug (it is bounded)")
        codec.check_limits(entity)
        if etag is None:
            created = self.tables.create(HEALTH, entity)
            if created is None:
                raise EtagMismatch("health state was created by another run")
            return created
        return self.tables.update(HEALTH, entity, etag, merge=False)


def _counters_of(stored: Stored, tenant: str) -> Counters:
    plain = {name: codec.get_document(stored.entity, name) for name in MAPS}
    for name in MAPS:
        if isinstance(plain[name], dict) and plain[name].get("_truncated"):
            raise ValueError(f"{name} was stored truncated")
    return Counters.from_plain(tenant, plain)

