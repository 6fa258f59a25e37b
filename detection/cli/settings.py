"""`settings`: check the app settings as this process sees them, or print the README's table."""

from __future__ import annotations

import argparse
import dataclasses

from detection.cli.common import add_settings_option, load_settings, run_command
from detection.settings import Settings, declarations, markdown_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "settings", help="validate the app settings (secrets hidden) or print the configuration table",
        description="Validate every app setting from the environment (or --settings FILE) and show the "
                    "values in effect, with secrets shown only as set/unset.")
    parser.add_argument("--markdown", action="store_true", help="print the README's configuration table")
    add_settings_option(parser)
    parser.set_defaults(func=lambda args: run_command(run, args))


def run(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
        return 0
    settings: Settings = load_settings(args)
    for declared in declarations():
        value = getattr(settings, declared["field"])
        if declared["secret"]:
            shown = "(set)" if value else "(not set)"
        else:
            shown = value if not dataclasses.is_dataclass(value) else repr(value)
        print(f"{declared['name']} = {shown}")
    return 0
