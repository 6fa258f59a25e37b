"""`cleanup`: delete alert-state rows past RETENTION_DAYS, a bounded amount per run.

Table Storage has no TTL, so every row carries `expires_at` and this sweep (or the timer calling the same
store method) removes what has passed it.
"""

from __future__ import annotations

import argparse

from detection.cli.common import (
    add_settings_option,
    load_settings,
    run_command,
    write_json_line,
)
from detection.cli.statecommon import open_store, storage_guard
from detection.notify.base import system_clock


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cleanup", help="delete expired alert-state rows",
        description="Delete alerts, notices and suppression rows older than RETENTION_DAYS, at most "
                    "--limit per table and run. Prints the deleted counts per table as JSON.")
    parser.add_argument("--limit", type=int, default=1000, metavar="N",
                        help="at most N rows per table (1000)")
    add_settings_option(parser)
    parser.set_defaults(func=lambda args: run_command(storage_guard(run), args))


def run(args: argparse.Namespace) -> int:
    store = open_store(load_settings(args))
    write_json_line(store.cleanup(system_clock(), limit=args.limit))
    return 0
