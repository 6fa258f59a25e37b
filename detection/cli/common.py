"""What several commands do the same way: settings, rules, error exits and JSON lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from detection.rules import RuleError, RuleSet, load_rules
from detection.settings import Settings, SettingsError

USAGE_ERROR = 2


class CommandError(Exception):
    """A problem the user can fix (bad setting, bad rule file, unreadable input): exit 2 with the message."""


def add_settings_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings", metavar="FILE", type=Path,
        help="read app settings from a Functions local.settings.json (its Values) over the environment")


def add_rules_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", metavar="DIR", type=Path,
                        help="rules folder (default: the RULES_DIR setting, else the bundled rules)")


def load_settings(args: argparse.Namespace) -> Settings:
    try:
        path = getattr(args, "settings", None)
        return Settings.from_local_settings(path) if path else Settings.from_env()
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


def load_ruleset(settings: Settings, args: argparse.Namespace) -> RuleSet:
    folder = getattr(args, "rules", None) or settings.rules_dir
    try:
        ruleset = load_rules(folder)
    except RuleError as exc:
        raise CommandError(str(exc)) from None
    for skipped in ruleset.skipped:
        warn(f"rule skipped: {skipped.name} ({skipped.path.name}): {skipped.reason}")
    return ruleset


def warn(message: str) -> None:
    print(message, file=sys.stderr)


def write_json_line(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value) + b"\n")


def report_skips(skips: Any, offset: int = 0) -> None:
    """Skips go to stderr with body number and reason, so stdout stays machine-readable. `offset` is
    the number of bodies before the batch the skips' indexes count from."""
    for skip in skips:
        warn(f"skipped body {skip.body_index + offset}: {skip.reason}: {skip.detail}")


def run_command(func: Any, args: argparse.Namespace) -> int:
    """Turn user-fixable errors into exit 2 with a one-line message instead of a traceback."""
    try:
        return int(func(args) or 0)
    except BrokenPipeError:
        raise  # a reader that stopped early (`| head`) is no error of the user's: main() ends quietly
    except (CommandError, OSError) as exc:
        warn(f"error: {exc}")
        return USAGE_ERROR
