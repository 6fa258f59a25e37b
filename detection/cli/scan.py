"""`scan`, `normalize` and `match`: the pure detection path over bodies read from files.

None of these touch storage or send anything, so they are safe to point at any data.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

from detection.cli.common import (
    USAGE_ERROR,
    add_rules_option,
    add_settings_option,
    load_ruleset,
    load_settings,
    report_skips,
    run_command,
    warn,
    write_json_line,
)
from detection.cli.inputs import batches, iter_bodies, iter_lines
from detection.engine import detect, map_record
from detection.kql import KqlSyntaxError, compile_query
from detection.sources import UTF8_BOM, BodyError, Limits, Skip, SourceRecord, decode_body, decode_document

SCAN_CHUNK = 500  # bodies per engine call: bounds memory on large inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    scan = subparsers.add_parser(
        "scan", help="run the rules over bodies and print one JSON alert per line",
        description="Run the rules over Event Hub bodies read from files and print each alert once, "
                    "as one JSON object per line. Skips are reported on stderr. Exit 0 on success, "
                    "2 on usage or rule errors.")
    scan.add_argument("paths", nargs="*", metavar="PATH",
                      help="a file is one body; .jsonl/.ndjson is one body per line; - is stdin")
    add_rules_option(scan)
    add_settings_option(scan)
    scan.add_argument("--no-prefilter", action="store_true",
                      help="parse every body (same alerts, slower; for comparison)")
    scan.set_defaults(func=lambda args: run_command(run_scan, args))

    normalize = subparsers.add_parser(
        "normalize", help="print the ECS document of every record, one per line",
        description="Map every audit record to its ECS document (Elastic's o365 mapping) and print "
                    "one JSON document per record per line, in input order.")
    normalize.add_argument("paths", nargs="*", metavar="PATH")
    add_settings_option(normalize)
    normalize.set_defaults(func=lambda args: run_command(run_normalize, args))

    match = subparsers.add_parser(
        "match", help="grep records with a KQL query",
        description="Evaluate a KQL query against the records (mapped to ECS) and print each matching "
                    "document unchanged, one per line. Exit 0 when something matched, 1 when nothing "
                    "did, 2 on a syntax error.")
    match.add_argument("query", metavar="QUERY")
    match.add_argument("paths", nargs="*", metavar="PATH")
    match.add_argument("--ecs", action="store_true",
                       help="inputs hold ECS documents, one per line, whatever the file's extension")
    add_settings_option(match)
    match.set_defaults(func=lambda args: run_command(run_match, args))


def run_scan(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    rules = load_ruleset(settings, args).rules
    seen: set[str] = set()
    totals: Counter[str] = Counter()
    offset = 0
    for chunk in batches(iter_bodies(args.paths), SCAN_CHUNK):
        result = detect(chunk, rules, settings, prefilter=False if args.no_prefilter else None)
        report_skips(result.stats.skip_list, offset)
        offset += len(chunk)
        for alert in [*result.alerts, *result.overflow]:
            if alert.alert_id not in seen:
                seen.add(alert.alert_id)
                write_json_line(alert.to_dict())
        totals.update(bodies=result.stats.bodies, prefiltered=result.stats.bodies_prefiltered,
                      records=result.stats.records, overflow=len(result.overflow),
                      excepted=len(result.excepted))
    warn(f"scan: {totals['bodies']} bodies ({totals['prefiltered']} set aside unparsed: no rule can match),"
         f" {totals['records']} records decoded, {len(seen)} alerts"
         f" ({totals['overflow']} beyond max_signals), {totals['excepted']} excepted")
    return 0


def _mapped_records(args: argparse.Namespace) -> Iterator[tuple[SourceRecord, dict[str, Any]]]:
    """Every record of the input bodies with its ECS document, in input order; what cannot be used
    (a body, a record, a mapping failure) is reported on stderr as it is met."""
    limits = Limits.from_settings(load_settings(args))
    for index, body in enumerate(iter_bodies(args.paths)):
        decoded = decode_body(body, limits, index)
        report_skips(decoded.skips)
        for record in decoded.records:
            ecs = map_record(record, index)
            if isinstance(ecs, Skip):
                report_skips([ecs])
            else:
                yield record, ecs


def run_normalize(args: argparse.Namespace) -> int:
    for _, ecs in _mapped_records(args):
        write_json_line(ecs)
    return 0


def run_match(args: argparse.Namespace) -> int:
    try:
        predicate = compile_query(args.query)
    except KqlSyntaxError as exc:
        warn(f"error: invalid query: {exc}")
        return USAGE_ERROR
    matched = 0
    if args.ecs:
        limits = Limits.from_settings(load_settings(args))
        for where, number, line in iter_lines(args.paths):
            try:
                doc = decode_document(line, limits)
            except BodyError as exc:
                warn(f"skipped {where} line {number}: {exc.reason}: {exc.detail}")
                continue
            if predicate(doc):
                matched += 1
                sys.stdout.buffer.write(line.removeprefix(UTF8_BOM).strip() + b"\n")
    else:
        for record, ecs in _mapped_records(args):
            if predicate(ecs):
                matched += 1
                write_json_line(record.raw)
    return 0 if matched else 1
