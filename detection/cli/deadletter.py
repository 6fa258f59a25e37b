"""`deadletter`: list, inspect and re-process the batches the function could not handle.

A batch lands in the dead-letter container when it failed every retry of the Event Hub function
(see detection.hosting). `replay` runs it through the function's own handler, built by the same
`build_pipeline`: alerts already stored are not stored or notified again, so replaying is safe to
repeat. A replayed dead letter is deleted (unless --keep); one that fails again stays.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from detection.cli.common import (
    CommandError,
    add_settings_option,
    load_settings,
    run_command,
    warn,
    write_json_line,
)
from detection.cli.statecommon import STORAGE_FAILURE, open_pipeline, storage_guard
from detection.deadletter import DeadLetterError, DeadLetterStore, DeadLetterUnavailable
from detection.settings import Settings, SettingsError
from detection.state.tables import StorageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deadletter", help="list, show and replay batches that failed every retry",
        description="Work with the dead-letter container (DEADLETTER_CONTAINER in the host's storage). "
                    "Output is JSON lines. Exit 0 on success, 1 when storage is unavailable, 2 on usage "
                    "or setting errors.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="one JSON line per dead-lettered batch")
    listing.add_argument("--prefix", help="only names starting with this, e.g. partition-3/")
    add_settings_option(listing)
    listing.set_defaults(func=lambda args: run_command(blob_guard(run_list), args))

    show = actions.add_parser("show", help="where a batch came from, why it failed, and its bodies")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--bodies", metavar="DIR", type=Path,
                      help="also write each body to DIR/body-NNNN.bin (input for scan or replay)")
    add_settings_option(show)
    show.set_defaults(func=lambda args: run_command(blob_guard(run_show), args))

    replay = actions.add_parser("replay", help="run batches through the function's handler again")
    replay.add_argument("names", nargs="*", metavar="NAME")
    replay.add_argument("--all", action="store_true", help="every dead-lettered batch, oldest name first")
    replay.add_argument("--keep", action="store_true", help="keep the blobs after a successful replay")
    add_settings_option(replay)
    replay.set_defaults(func=lambda args: run_command(storage_guard(blob_guard(run_replay)), args))


def blob_guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The dead-letter container unreachable or refusing → one line on stderr and exit 1, as for the
    alert tables, instead of the SDK's traceback."""
    def guarded(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except DeadLetterUnavailable as exc:
            warn(f"error: dead letters: {exc}")
            return STORAGE_FAILURE
    return guarded


def _store(settings: Settings) -> DeadLetterStore:
    try:
        return DeadLetterStore.open(settings)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


def _read(store: DeadLetterStore, name: str):
    try:
        return store.read(name)
    except DeadLetterUnavailable:
        raise
    except DeadLetterError as exc:
        raise CommandError(str(exc)) from None


def run_list(args: argparse.Namespace) -> int:
    store = _store(load_settings(args))
    for info in store.list(args.prefix):
        write_json_line({"name": info.name, "size": info.size, "last_modified": info.last_modified})
    return 0


def run_show(args: argparse.Namespace) -> int:
    letter = _read(_store(load_settings(args)), args.name)
    written = []
    if args.bodies:
        args.bodies.mkdir(parents=True, exist_ok=True)
        for index, body in enumerate(letter.bodies):
            path = args.bodies / f"body-{index:04d}.bin"
            path.write_bytes(body)
            written.append(str(path))
    write_json_line({"name": letter.name, "failed_at": letter.failed_at, "attempts": letter.attempts,
                     "error": letter.error, "origin": letter.origin.to_dict(),
                     "where": letter.origin.describe(), "bodies": len(letter.bodies),
                     "bytes": sum(len(b) for b in letter.bodies), "written": written})
    return 0


def run_replay(args: argparse.Namespace) -> int:
    if bool(args.names) == bool(args.all):
        raise CommandError("name the dead letters to replay, or pass --all (see `deadletter list`)")
    settings = load_settings(args)
    store = _store(settings)
    names = args.names or sorted(info.name for info in store.list())
    letters = [_read(store, name) for name in names]  # all readable before anything is replayed
    pipeline = open_pipeline(settings)
    try:
        for letter in letters:
            try:
                report = pipeline.handle(letter.bodies)
            except StorageError as exc:
                write_json_line({"name": letter.name, "replayed": False, "error": str(exc)})
                return STORAGE_FAILURE
            if not args.keep:
                store.delete(letter.name)
            write_json_line({"name": letter.name, "replayed": True, "deleted": not args.keep,
                             **report.to_dict()})
    finally:
        pipeline.close()
    return 0
