"""The alert state as operations on entities: alerts, notices, suppression groups and the owed index.

Layout (all keys from `state.keys`):

alerts table
    alert       PK tenant key, RK alert id. status, the alert's fields, raw and ECS (bounded), event_at,
                its suppression role (undecided → head | member | solo), the delivery ledger (JSON),
                owed + next_attempt_at, created_at, expires_at.
    notice      PK tenant key, RK notice id ("n-overflow-…", "n-failed-…"): a message that is not one
                alert (overflow summary, delivery-failed notice), with a ledger of its own.
    owed index  PK "owed", RK "<pk>~<rk>": one row per deliverable that may still owe a destination,
                with next_attempt_at. The outbox reads only this partition (`PartitionKey eq @pk and
                next_attempt_at le @now`), not the whole table. The row is written before the
                deliverable is created and removed once its ledger owes nothing, so a crash in between
                leaves a row too many (the outbox drops it), never one too few.

groups table (one partition per suppression series: rule, tenant, group-by values)
    series      RK "series": suppressed_total (alerts suppressed) and reported_total (counted in a
                notification so far).
    window      RK "w-<start>": the head alert of that window (first writer wins) and its count.
    member      RK "m-<start>-<alert id>": one per suppressed alert.
    take        RK "t-<alert id>": how many suppressed alerts a head's notification reports.

A suppressed alert is counted by one transaction in its series partition: create its member row and
add one to the window's and the series' counters, both with their ETags. The member row makes the count
idempotent (a re-run's transaction fails on it: already counted) and the ETags make it safe under
concurrency (a conflicting writer makes the transaction fail as a whole; it is re-read and retried).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from detection.alerts import Alert
from detection.settings import Settings
from detection.state import codec, keys
from detection.state.lifecycle import Group, Ledger
from detection.state.tables import EtagMismatch, StorageUnavailable, Stored, Tables, TransactionFailed

log = logging.getLogger(__name__)

ALERTS = "alerts"
GROUPS = "groups"
CONFLICT_ATTEMPTS = 200  # optimistic-concurrency retries before giving the batch back to the host


@dataclass(frozen=True)
class Ref:
    """Where a deliverable (alert or notice) lives."""

    partition: str
    row: str


def ref_of(entity: Mapping[str, Any]) -> Ref:
    return Ref(str(entity["PartitionKey"]), str(entity["RowKey"]))


class Contention(StorageUnavailable):
    """Too many concurrent writers on one entity for too long; the batch is retried later."""


def backoff(attempt: int) -> None:
    """A short randomised pause between optimistic-concurrency retries, so contenders spread out."""
    time.sleep(min(0.2, 0.002 * attempt) * random.random())  # noqa: S311 - jitter, not a secret


class AlertStore:
    """Alert state over `Tables`: the only place that knows the layout above."""

    def __init__(self, tables: Tables, *, retention: timedelta) -> None:
        self.tables = tables
        self.retention = retention

    @classmethod
    def open(cls, settings: Settings, *, create_tables: bool = True, **table_options: Any) -> AlertStore:
        keys.check_table_name("ALERTS_TABLE", settings.alerts_table)
        keys.check_table_name("GROUPS_TABLE", settings.groups_table)
        tables = Tables.open(settings, {ALERTS: settings.alerts_table, GROUPS: settings.groups_table},
                             **table_options)
        if create_tables:
            tables.ensure_tables()
        return cls(tables, retention=timedelta(days=settings.retention_days))

    def expiry(self, now: datetime) -> datetime:
        return now + self.retention

    # ---- deliverables ----

    def alert_entity(self, alert: Alert, *, status: str, when: datetime, now: datetime,
                     group: Group | None = None, notice: str | None = None) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": keys.tenant_key(alert.tenant_id),
            "RowKey": keys.safe_id(alert.alert_id),
            "kind": "alert",
            "status": status,
            **codec.alert_properties(alert),
            "event_at": when,
            "created_at": now,
            "updated_at": now,
            "expires_at": self.expiry(now),
            "role": "undecided" if status == "new" else "none",
            "ledger": "{}",
            "owed": status == "new",
        }
        if group is not None:
            entity.update(group_series=group.series, group_window=group.start, group_end=group.end)
        if notice is not None:
            entity["notice_id"] = notice
        codec.check_limits(entity)
        return entity

    def notice_entity(self, *, tenant_id: str, notice: str, notice_kind: str, body: Mapping[str, Any],
                      ledger: Ledger, now: datetime) -> dict[str, Any]:
        entity = {
            "PartitionKey": keys.tenant_key(tenant_id),
            "RowKey": notice,
            "kind": "notice",
            "notice_kind": notice_kind,
            "status": "new",
            "tenant_id": codec.clip(tenant_id),
            "message": codec.clip(codec.dumps(dict(body)), codec.CHUNK_UNITS),
            "created_at": now,
            "updated_at": now,
            "expires_at": self.expiry(now),
            "ledger": codec.dumps(ledger),
            "owed": bool(ledger),
        }
        codec.check_limits(entity)
        return entity

    def create(self, entity: Mapping[str, Any]) -> Stored | None:
        """First writer wins: the stored entity when we created it, None when it already existed."""
        etag = self.tables.create(ALERTS, entity)
        return None if etag is None else Stored(dict(entity), etag)

    def get(self, ref: Ref) -> Stored | None:
        return self.tables.get(ALERTS, ref.partition, ref.row)

    def update(self, stored: Stored, changes: Mapping[str, Any], now: datetime) -> Stored:
        """Merge `changes` if the entity is unchanged since `stored` was read (else EtagMismatch)."""
        entity = {"PartitionKey": stored.entity["PartitionKey"], "RowKey": stored.entity["RowKey"],
                  **changes, "updated_at": now}
        etag = self.tables.update(ALERTS, entity, stored.etag)
        return Stored({**stored.entity, **entity}, etag)

    def find(self, alert_id: str) -> Stored | None:
        """An alert or notice by id alone (any tenant): for `alerts show`."""
        for found in self.tables.query(ALERTS, "RowKey eq @row and kind ne @index",
                                       {"row": keys.safe_id(alert_id), "index": "index"}, limit=1):
            return found
        return None

    def list(self, *, status: str | None = None, rule_id: str | None = None, since: datetime | None = None,
             kind: str = "alert", limit: int | None = None,
             select: Sequence[str] | None = None) -> Iterator[Stored]:
        """Alerts (or notices) matching the filters, in key order (tenant, then alert id), not time."""
        clauses = ["kind eq @kind"]
        parameters: dict[str, Any] = {"kind": kind}
        if status:
            clauses.append("status eq @status")
            parameters["status"] = status
        if rule_id:
            clauses.append("rule_id eq @rule")
            parameters["rule"] = rule_id
        if since:
            clauses.append("event_at ge @since")
            parameters["since"] = since
        return self.tables.query(ALERTS, " and ".join(clauses), parameters, limit=limit, select=select)

    # ---- the owed index ----

    def mark_owed(self, ref: Ref, next_attempt: datetime, now: datetime) -> None:
        self.tables.upsert(ALERTS, {
            "PartitionKey": keys.OWED_PARTITION, "RowKey": keys.owed_row(ref.partition, ref.row),
            "kind": "index", "target_pk": ref.partition, "target_rk": ref.row,
            "next_attempt_at": next_attempt, "marked_at": now, "expires_at": self.expiry(now)})

    def clear_owed(self, ref: Ref, etag: str | None = None) -> bool:
        return self.tables.delete(ALERTS, keys.OWED_PARTITION, keys.owed_row(ref.partition, ref.row), etag)

    def owed(self, now: datetime, *, limit: int) -> list[Stored]:
        return list(self.tables.query(ALERTS, "PartitionKey eq @pk and next_attempt_at le @now",
                                      {"pk": keys.OWED_PARTITION, "now": now}, limit=limit))

    # ---- suppression groups ----

    def join_group(self, group: Group, alert_id: str, tenant_id: str, rule_id: str,
                   now: datetime) -> tuple[str, str | None]:
        """("head", None) when this alert heads its window, else ("member", head alert id).

        Safe to call again for the same alert (a re-run, a retried request): it gives the same answer
        and counts the alert at most once.
        """
        expires = max(now, group.end) + self.retention
        partition = group.series
        self.tables.create(GROUPS, {
            "PartitionKey": partition, "RowKey": keys.SERIES_ROW, "rule_id": rule_id,
            "tenant_id": codec.clip(tenant_id), "values": codec.clip(codec.dumps(list(group.values))),
            "suppressed_total": 0, "reported_total": 0, "expires_at": expires})
        window_row = keys.window_row(group.start)
        self.tables.create(GROUPS, {
            "PartitionKey": partition, "RowKey": window_row, "head_alert_id": alert_id,
            "window_start": group.start, "window_end": group.end, "suppressed": 0, "expires_at": expires})
        for attempt in range(CONFLICT_ATTEMPTS):
            window = self.tables.get(GROUPS, partition, window_row)
            series = self.tables.get(GROUPS, partition, keys.SERIES_ROW)
            if window is None or series is None:
                raise EtagMismatch("suppression group rows vanished while in use")
            head = str(window.entity.get("head_alert_id"))
            if head == alert_id:
                return "head", None
            member = {"PartitionKey": partition, "RowKey": keys.member_row(group.start, alert_id),
                      "alert_id": alert_id, "expires_at": expires}
            try:
                self.tables.transact(GROUPS, [
                    ("create", member, None),
                    ("update", {"PartitionKey": partition, "RowKey": window_row,
                                "suppressed": int(window.entity.get("suppressed") or 0) + 1,
                                "expires_at": expires}, window.etag),
                    ("update", {"PartitionKey": partition, "RowKey": keys.SERIES_ROW,
                                "suppressed_total": int(series.entity.get("suppressed_total") or 0) + 1,
                                "expires_at": max(expires, series.entity.get("expires_at") or expires)},
                     series.etag),
                ])
                return "member", head
            except TransactionFailed as exc:
                if exc.index == 0 and exc.code == "EntityAlreadyExists":
                    return "member", head  # counted before: by our earlier attempt or run
                if exc.code not in ("UpdateConditionNotSatisfied", "ConditionNotMet"):
                    raise
            backoff(attempt)
        raise Contention(f"suppression series {partition}: too many concurrent updates")

    def take_unreported(self, series_key: str, alert_id: str, now: datetime) -> int:
        """How many alerts of the series were suppressed since its last notification, now reported by
        `alert_id` (a head about to be notified).

        The take is recorded once per head, as a row created in the same transaction that moves the
        series' reported counter: whichever instance (or retry) asks for the same head gets the number
        that row holds, even zero, so every copy of the head's decision carries the same count and each
        suppressed alert is reported by exactly one notification.
        """
        take_row = keys.take_row(alert_id)
        for attempt in range(CONFLICT_ATTEMPTS):
            taken = self.tables.get(GROUPS, series_key, take_row)
            if taken is not None:
                return int(taken.entity.get("count") or 0)
            series = self.tables.get(GROUPS, series_key, keys.SERIES_ROW)
            if series is None:
                return 0
            total = int(series.entity.get("suppressed_total") or 0)
            count = max(0, total - int(series.entity.get("reported_total") or 0))
            expires = max(self.expiry(now), series.entity.get("expires_at") or self.expiry(now))
            operations: list[tuple[str, dict[str, Any], str | None]] = [
                ("create", {"PartitionKey": series_key, "RowKey": take_row, "alert_id": alert_id,
                            "count": count, "expires_at": expires}, None)]
            if count:
                operations.append(("update", {"PartitionKey": series_key, "RowKey": keys.SERIES_ROW,
                                              "reported_total": total}, series.etag))
            try:
                self.tables.transact(GROUPS, operations)
                return count
            except TransactionFailed as exc:
                if exc.code not in ("EntityAlreadyExists", "UpdateConditionNotSatisfied", "ConditionNotMet"):
                    raise
            backoff(attempt)
        raise Contention(f"suppression series {series_key}: too many concurrent updates")

    def window(self, series_key: str, start: datetime) -> dict[str, Any] | None:
        found = self.tables.get(GROUPS, series_key, keys.window_row(start))
        return found.entity if found else None

    def windows(self, series_key: str) -> list[dict[str, Any]]:
        return [s.entity for s in self.tables.query(
            GROUPS, "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": series_key, "lo": "w-", "hi": "w."})]

    # ---- retention ----

    def cleanup(self, now: datetime, *, limit: int = 1000, max_pages: int = 20) -> dict[str, int]:
        """Delete rows whose expires_at has passed: at most `limit` deletions and `max_pages` result
        pages per table and call, so a large backlog is worked off over several runs."""
        deleted: dict[str, int] = {}
        for role in (ALERTS, GROUPS):
            count = 0
            rows = self.tables.query(role, "expires_at lt @now", {"now": now},
                                     select=["PartitionKey", "RowKey"], limit=limit,
                                     page_size=min(limit, 1000), max_pages=max_pages)
            for row in rows:
                if self.tables.delete(role, row.entity["PartitionKey"], row.entity["RowKey"]):
                    count += 1
            deleted[self.tables.names[role]] = count
        return deleted
