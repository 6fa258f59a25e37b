"""`redeliver`: one outbox sweep, what the function app's timer runs every few minutes.

Sends what alerts still owe (due retries, alerts whose instance died mid-batch), marks destinations
failed past DELIVERY_MAX_AGE and tells the others. Never sends a destination something it already has.
Prints the sweep's counts as JSON.
"""

from __future__ import annotations

import argparse

from detection.cli.common import (
    add_settings_option,
    load_settings,
    run_command,
    write_json_line,
)
from detection.cli.statecommon import open_pipeline, storage_guard


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "redeliver", help="send notifications still owed (the outbox)",
        description="Run one outbox sweep: retry notifications still owed, give up past DELIVERY_MAX_AGE "
                    "and notify the other destinations. Prints the counts as JSON.")
    parser.add_argument("--limit", type=int, default=500, metavar="N", help="at most N due items (500)")
    add_settings_option(parser)
    parser.set_defaults(func=lambda args: run_command(storage_guard(run), args))


def run(args: argparse.Namespace) -> int:
    pipeline = open_pipeline(load_settings(args))
    try:
        write_json_line(pipeline.redeliver(limit=args.limit).to_dict())
    finally:
        pipeline.close()
    return 0
