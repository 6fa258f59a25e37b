"""`replay`: the Event Hub function's own handler over bodies read from files, with state and notifications.

The same `handler.handle_batch` the function runs, built by the same `build_pipeline` from the same
settings (the environment, or a Functions `local.settings.json`), fed in batches like the trigger's.
Replaying a file twice stores and notifies nothing new: that is the point of the handler, and what
makes replaying a dead-lettered batch safe. The batch statistics are printed as JSON on stdout;
console notifications (no webhook configured) go to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse

from detection.cli.common import (
    CommandError,
    add_settings_option,
    load_settings,
    run_command,
    warn,
    write_json_line,
)
from detection.cli.inputs import batches, count_bodies, iter_bodies
from detection.cli.progress import Progress
from detection.cli.statecommon import STORAGE_FAILURE, open_pipeline, storage_guard
from detection.handler import BatchReport
from detection.state.tables import StorageError

BATCH_SIZE = 100  # bodies per handler call, like the trigger's maxEventBatchSize


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay", help="run the Event Hub handler over bodies from files (stores and notifies)",
        description="Run the exact handler of the Event Hub function over bodies read from files: alerts "
                    "are stored in Table Storage and notified once per destination. Prints the batch "
                    "statistics as JSON. Exit 0 on success, 1 when storage is unavailable, 2 on usage, "
                    "setting or rule errors.")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="a file is one body; .jsonl/.ndjson is one body per line; - is stdin")
    add_settings_option(parser)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, metavar="N",
                        help=f"bodies per handler call (default {BATCH_SIZE})")
    parser.add_argument("--progress", action="store_true", help="show progress on stderr even when piped")
    parser.set_defaults(func=lambda args: run_command(storage_guard(run), args))


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    pipeline = open_pipeline(load_settings(args))
    progress = Progress("replay", count_bodies(args.paths), enabled=True if args.progress else None)
    total = BatchReport()
    try:
        for batch in batches(iter_bodies(args.paths), args.batch_size):
            total.add(pipeline.handle(batch))
            progress.update(total.bodies, f"{total.new} new alerts")
        progress.update(total.bodies, f"{total.new} new alerts", force=True)
    except StorageError as exc:
        progress.close()
        warn(f"error: alert state: {exc}; the batches reported below completed, run again to finish "
             "the rest (what was done is not done twice)")
        write_json_line(total.to_dict())
        return STORAGE_FAILURE
    finally:
        pipeline.close()
    progress.close()
    write_json_line(total.to_dict())
    return 0
