"""The command line, `python -m detection <command>`.

Each command lives in its own module under detection/cli/ with `register(subparsers)` and `run(args)`;
this module only dispatches. The command names, inputs and outputs are an interface other tools drive.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Module names under detection.cli, in the order `--help` lists them.
COMMANDS = [
    "demo",
    "scan",
    "rules",
    "replay",
    "alerts",
    "redeliver",
    "cleanup",
    "health",
    "deadletter",
    "send",
    "settings",
    "preview",
    "bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m detection",
        description="Detection rules over Microsoft 365 audit records (Event Hub bodies).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"detection.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # argparse cannot take positionals after an option once a `nargs="*"` positional has matched empty
    # (`match QUERY --ecs FILE`), so paths that arrive after options are gathered here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if isinstance(getattr(args, "paths", None), list) and not any(
                e.startswith("-") and e != "-" for e in extra):
            args.paths.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # A downstream `head` closed the pipe: not an error of ours.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
