"""`demo`: the bundled sample stream through the whole pipeline, on embedded defaults.

It runs the exact handler the Event Hub function runs. When no alert storage is configured it starts
Azurite in memory for the run and stops it afterwards; when no webhook is configured the console shows
what would be sent. Replaying the same stream a second time shows the point of the design: nothing new
is stored or notified.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path

from detection.cli.alerts import newest_alerts, print_table
from detection.cli.common import CommandError, add_settings_option, load_settings, run_command
from detection.cli.inputs import iter_bodies
from detection.cli.statecommon import storage_guard
from detection.devserver import Azurite, AzuriteError
from detection.handler import BatchReport, build_pipeline
from detection.rules import RuleError
from detection.settings import Settings, SettingsError

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the bundled sample stream through the whole pipeline",
        description="Run the bundled sample stream (or PATHs) through the Event Hub handler: Azurite in "
                    "memory unless alert storage is configured, the console unless a webhook is.")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="bodies to use instead of the samples")
    add_settings_option(parser)
    parser.set_defaults(func=lambda args: run_command(storage_guard(run), args))


def storage_configured(settings: Settings) -> bool:
    return any((settings.alerts_storage_connection, settings.alerts_storage_endpoint,
                settings.azure_webjobs_storage, settings.azure_webjobs_storage_table_uri,
                settings.azure_webjobs_storage_account))


def sample_paths() -> list[str]:
    return sorted(str(p) for p in SAMPLES.iterdir() if p.is_file() and p.name != "README.md")


def _say(text: str = "") -> None:
    print(text, flush=True)


def _report_line(report: BatchReport) -> str:
    data = report.to_dict()
    skips = ", ".join(f"{n} {reason}" for reason, n in sorted(data.get("skips", {}).items())) or "none"
    return (f"{data['bodies']} bodies, {data['records']} records decoded, skips: {skips}; "
            f"{data['new']} new alerts, {data['duplicates']} already stored, "
            f"{data['suppressed']} suppressed, {data['notified']} notifications sent")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    paths = args.paths or sample_paths()
    with contextlib.ExitStack() as stack:
        if storage_configured(settings):
            _say("Alert state: the configured Table Storage")
        else:
            try:
                server = stack.enter_context(Azurite())
            except AzuriteError as exc:
                raise CommandError(f"{exc} (or set ALERTS_STORAGE_CONNECTION)") from None
            settings = dataclasses.replace(settings, alerts_storage_connection=server.connection_string)
            _say(f"Alert state: Azurite in memory on {server.host}:{server.port} (stopped at the end)")
        try:
            pipeline = build_pipeline(settings, console_stream=sys.stdout)
        except (SettingsError, RuleError) as exc:
            raise CommandError(str(exc)) from None
        stack.callback(pipeline.close)
        names = ", ".join(d.name for d in pipeline.destinations)
        _say(f"Rules: {len(pipeline.rules.rules)} loaded from {settings.rules_dir}")
        _say(f"Destinations: {names}")
        bodies = list(iter_bodies(paths))
        _say(f"\n== Handling {len(bodies)} bodies from {len(paths)} files ==\n")
        first = pipeline.handle(bodies)
        _say(f"\nFirst pass:  {_report_line(first)}")
        again = pipeline.handle(bodies)
        _say(f"Replayed:    {_report_line(again)}")
        _say("\n== Stored alerts ==")
        print_table(newest_alerts(pipeline.store, 100))
    return 0
