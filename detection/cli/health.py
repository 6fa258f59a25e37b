"""`health`: is the pipeline still receiving what the rules need? The heartbeat's summary, on demand.

Reads the stored health counters: records per tenant and workload, alerts, suppressed, deliveries and
their failures, then the silence and drift findings of the checks the health timer runs. `--notify`
runs that timer once instead (checks, the notices they owe, the heartbeat when due) and prints what it
did. Storage unreachable exits 1, a bad setting or rule file 2.
"""

from __future__ import annotations

import argparse

from detection.cli.common import (
    CommandError,
    add_rules_option,
    add_settings_option,
    load_ruleset,
    load_settings,
    run_command,
    write_json_line,
)
from detection.cli.statecommon import open_pipeline, storage_guard
from detection.health.routine import health_summary, run_health
from detection.health.store import HealthStore
from detection.health.summary import render_text
from detection.notify.base import system_clock
from detection.settings import Settings, SettingsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "health", help="source health and rule-input drift from the stored counters",
        description="Print the health summary: records, alerts, suppressed, delivery failures per "
                    "tenant and workload for the last DAYS finished UTC days plus today, and which "
                    "sources are silent and which rules may be blind (their input operations no "
                    "longer arrive). With --notify, run the health timer once instead.")
    parser.add_argument("--days", type=int, default=1, metavar="N",
                        help="finished UTC days before today to count (1: yesterday and today)")
    parser.add_argument("--json", action="store_true", help="the summary as one JSON object")
    parser.add_argument("--notify", action="store_true",
                        help="run the checks and send the notices and heartbeat they owe, like the timer")
    add_rules_option(parser)
    add_settings_option(parser)
    parser.set_defaults(func=lambda args: run_command(storage_guard(run), args))


def open_health_store(settings: Settings) -> HealthStore:
    try:
        return HealthStore.open(settings)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if args.days < 0:
        raise CommandError("--days must be 0 or more")
    settings = load_settings(args)
    if args.notify:
        pipeline = open_pipeline(settings)
        try:
            write_json_line(run_health(open_health_store(settings), settings=settings, clock=pipeline.clock,
                                       destinations=pipeline.destinations, rules=pipeline.rules.rules))
        finally:
            pipeline.close()
        return 0
    rules = load_ruleset(settings, args).rules
    summary = health_summary(open_health_store(settings), settings=settings, now=system_clock(),
                             rules=rules, days=args.days)
    if args.json:
        write_json_line(summary)
    else:
        print(render_text(summary))
    return 0
