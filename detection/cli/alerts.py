"""`alerts list` and `alerts show`: what the alert state holds, for an analyst at a terminal.

Every status is listed (new, notified, suppressed, excepted, muted, overflow, failed, below_threshold),
so an alert that was muted by a maintenance window, never reached a destination or was below every
destination's minimum severity is as visible as a notified one. The delivery ledger shows destination
names, states and errors only: webhook URLs are never stored.
"""

from __future__ import annotations

import argparse
import heapq
import sys
from datetime import UTC, datetime
from typing import Any

from detection.cli.common import (
    CommandError,
    add_settings_option,
    load_settings,
    run_command,
    write_json_line,
)
from detection.cli.statecommon import open_store, storage_guard
from detection.notify.base import system_clock
from detection.settings import parse_duration
from detection.state import codec
from detection.state.lifecycle import STATUSES, parse_time
from detection.state.store import AlertStore
from detection.state.tables import Stored

_NEVER = datetime.min.replace(tzinfo=UTC)
COLUMNS = ("event_time", "status", "severity", "rule_name", "user_id", "tenant_id", "alert_id")
LIST_FIELDS = ("alert_id", "status", "rule_id", "rule_name", "severity", "event_time", "tenant_id",
               "user_id", "source_ip", "record_id", "old_value", "new_value", "role", "head_alert_id",
               "suppressed_count")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alerts", help="list and show stored alerts",
        description="Read the alert state: `alerts list` with filters, `alerts show ALERT_ID` in full.")
    commands = parser.add_subparsers(dest="alerts_command", metavar="SUBCOMMAND", required=True)

    listing = commands.add_parser("list", help="stored alerts, newest event first",
                                  description="List stored alerts, newest event first.")
    listing.add_argument("--status", choices=STATUSES,
                         help="only alerts with this status (below_threshold: below every destination's "
                              "minimum severity, so sent nowhere; `alerts show` names the thresholds)")
    listing.add_argument("--rule", metavar="RULE_ID", help="only alerts of this rule")
    listing.add_argument("--since", metavar="T",
                         help="only events at or after T: an ISO-8601 time, or a duration back from now "
                              "(24h, 7d)")
    listing.add_argument("--limit", type=int, default=1000, metavar="N", help="the newest N alerts (1000)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_settings_option(listing)
    listing.set_defaults(func=lambda args: run_command(storage_guard(run_list), args))

    show = commands.add_parser("show", help="one alert with its ledger and documents",
                               description="Show one alert as JSON: fields, delivery ledger, suppression "
                                           "window, raw record and ECS document.")
    show.add_argument("alert_id", metavar="ALERT_ID")
    add_settings_option(show)
    show.set_defaults(func=lambda args: run_command(storage_guard(run_show), args))


def since_time(text: str | None, now: datetime) -> datetime | None:
    if not text:
        return None
    when = parse_time(text)
    if when is not None:
        return when
    try:
        return now - parse_duration(text)
    except ValueError:
        raise CommandError(
            f"--since: expected an ISO-8601 time or a duration such as 24h, got {text!r}") from None


def summary(entity: dict[str, Any]) -> dict[str, Any]:
    return {name: entity.get(name) for name in LIST_FIELDS if entity.get(name) is not None}


def run_list(args: argparse.Namespace) -> int:
    """The newest `--limit` alerts: the table is in key order, not time order, so every match is read
    (only the listed properties, not the documents) and the newest kept."""
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    store = open_store(load_settings(args))
    since = since_time(args.since, system_clock())
    rows = newest_alerts(store, args.limit, status=args.status, rule_id=args.rule, since=since)
    if args.json:
        for entity in rows:
            write_json_line(summary(entity))
        return 0
    print_table(rows)
    return 0


def newest_alerts(store: AlertStore, limit: int, **filters: Any) -> list[dict[str, Any]]:
    """The newest `limit` alerts' listed fields, newest first (shared by `alerts list` and the demo)."""
    found = store.list(select=(*LIST_FIELDS, "event_at", "kind"), **filters)
    return heapq.nlargest(limit, (stored.entity for stored in found), key=_newest_first)


def _newest_first(entity: dict[str, Any]) -> tuple[datetime, str]:
    when = entity.get("event_at")
    return (when if isinstance(when, datetime) else _NEVER), str(entity.get("alert_id"))


def print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no alerts", file=sys.stderr)
        return
    cells = [[_cell(e.get(c)) for c in COLUMNS] for e in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(COLUMNS)]
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any, width: int = 40) -> str:
    text = "" if value is None else " ".join(str(value).split())
    text = "".join(c if c.isprintable() else "?" for c in text)  # no terminal control from record data
    return text if len(text) <= width else text[: width - 1] + "…"


def details(stored: Stored, store: AlertStore) -> dict[str, Any]:
    """The whole stored alert as JSON-ready data."""
    entity = stored.entity
    shown = summary(entity)
    shown["created_at"] = _iso(entity.get("created_at"))
    shown["expires_at"] = _iso(entity.get("expires_at"))
    shown["ledger"] = codec.loads(entity.get("ledger"), {})
    below = codec.loads(entity.get("below_min_severity"), {})
    if below:
        # destination → its minimum severity, for each destination the alert's severity is below
        shown["below_min_severity"] = below
    if entity.get("kind") == "notice":
        shown["notice"] = codec.loads(entity.get("message"), {})
        shown["notice_kind"] = entity.get("notice_kind")
        return shown
    if entity.get("group_series") and entity.get("group_window"):
        window = store.window(str(entity["group_series"]), entity["group_window"])
        shown["suppression_window"] = {
            "start": _iso(entity.get("group_window")), "end": _iso(entity.get("group_end")),
            "head_alert_id": window.get("head_alert_id") if window else None,
            "suppressed": int(window.get("suppressed") or 0) if window else 0}
    if entity.get("notice_id"):
        shown["overflow_notice"] = entity["notice_id"]
    alert = codec.alert_from_entity(entity)
    shown["threat"] = list(alert.threat)
    shown["raw"] = alert.raw
    shown["ecs"] = alert.ecs
    shown["raw_truncated"] = bool(entity.get("raw_truncated"))
    return shown


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def run_show(args: argparse.Namespace) -> int:
    store = open_store(load_settings(args))
    found = store.find(args.alert_id)
    if found is None:
        raise CommandError(f"no alert {args.alert_id!r}")
    write_json_line(details(found, store))
    return 0

