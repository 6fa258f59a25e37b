"""What the alert-state commands (replay, alerts, redeliver, cleanup) do the same way.

Start-up problems the user can fix (a bad setting, a bad rule file) exit 2 like every other command;
Table Storage being unreachable is not a usage error and exits 1, after the adapter's own retries.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from detection.cli.common import CommandError, warn
from detection.handler import Pipeline, build_pipeline
from detection.rules import RuleError
from detection.settings import Settings, SettingsError
from detection.state.store import AlertStore
from detection.state.tables import StorageError

STORAGE_FAILURE = 1


def open_pipeline(settings: Settings) -> Pipeline:
    """The handler's pipeline; console notifications go to stderr so stdout stays JSON."""
    try:
        return build_pipeline(settings, console_stream=sys.stderr)
    except (SettingsError, RuleError) as exc:
        raise CommandError(str(exc)) from None


def open_store(settings: Settings) -> AlertStore:
    try:
        return AlertStore.open(settings)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


def storage_guard(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; Table Storage unavailable or refusing → one line on stderr and exit 1."""
    def guarded(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except StorageError as exc:
            warn(f"error: alert state: {exc}")
            return STORAGE_FAILURE
    return guarded
