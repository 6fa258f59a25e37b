"""`preview ALERT_ID | --sample [--out FILE]`: an HTML page showing what an alert's notifications look like.

The Teams card is rendered by Microsoft's own Adaptive Cards SDK (the same one that checks our cards),
so what a person sees in the browser is what the SDK makes of the card we would post; the Slack payload
and the console text follow. With --sample the alert comes from the bundled seed rule's first record
that must alert, so the preview works on a fresh clone without any storage.
"""

from __future__ import annotations

import argparse
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from detection.cli.common import (
    CommandError,
    add_rules_option,
    add_settings_option,
    load_ruleset,
    load_settings,
    run_command,
    warn,
)
from detection.cli.statecommon import storage_guard
from detection.notify.base import AlertMessage, Message
from detection.notify.cardcheck import CardCheckUnavailable, check_cards
from detection.notify.console import render_text
from detection.notify.content import GuideLike, content_for
from detection.notify.slack import payload as slack_payload
from detection.notify.teams import payload as teams_payload
from detection.rules import Rule, RuleSet
from detection.settings import Settings

SEED_RULE_ID = "bbd1a775-8267-41fa-9232-20e5582596ac"
DEFAULT_OUT = Path("alert-preview.html")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preview", help="write an HTML page with an alert's Teams card and Slack message",
        description="Render the Teams Adaptive Card of a stored alert (or of a sample alert) with the "
                    "Adaptive Cards SDK, with the Slack payload and console text, into one HTML page.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("alert_id", nargs="?", metavar="ALERT_ID", help="an alert in the alert store")
    which.add_argument("--sample", action="store_true",
                       help="a sample alert from the seed rule's first test record that must alert")
    parser.add_argument("--out", metavar="FILE", type=Path, default=DEFAULT_OUT,
                        help=f"HTML file to write (default: {DEFAULT_OUT})")
    add_rules_option(parser)
    add_settings_option(parser)
    parser.set_defaults(func=lambda args: run_command(storage_guard(run), args))


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    ruleset = load_ruleset(settings, args)
    message = sample_message(ruleset) if args.sample else stored_message(settings, args.alert_id)
    guides = {rule.rule_id: rule.guide for rule in ruleset.rules}
    result = write_preview(message, guides, args.out)
    for failure in result:
        warn(failure)
    print(f"wrote {args.out}")
    return 1 if result else 0


def sample_message(ruleset: RuleSet) -> AlertMessage:
    """The alert the seed rule (else the first rule with one) makes of its first must-alert record."""
    from detection.alerts import build_alert
    from detection.ecs import to_ecs

    rules = sorted(ruleset.rules, key=lambda r: r.rule_id != SEED_RULE_ID)
    for rule in rules:
        record = _first_alerting_record(rule)
        if record is not None:
            return AlertMessage(build_alert(rule, to_ecs(record), record), suppressed_count=0)
    raise CommandError("no loaded rule has a test record that must alert; nothing to preview")


def _first_alerting_record(rule: Rule) -> dict[str, Any] | None:
    return next((test.record for test in rule.tests if test.expect_alert), None)


def stored_message(settings: Settings, alert_id: str) -> AlertMessage:
    from detection.state.delivery import alert_message
    from detection.state.store import AlertStore

    try:  # an unreachable store is StorageError: storage_guard makes it exit 1 like the other state commands
        stored = AlertStore.open(settings, create_tables=False).find(alert_id)
    except ValueError as exc:
        raise CommandError(f"cannot read the alert store: {exc}") from None
    if stored is None or stored.entity.get("kind") != "alert":
        raise CommandError(f"no alert with id {alert_id!r} in the alert store")
    return alert_message(stored.entity)  # as it was sent, with the suppressed count it reported


def write_preview(message: Message, guides: Mapping[str, GuideLike], out: Path) -> list[str]:
    """Write the page; returns the card check's failures (empty when the card is clean)."""
    content = content_for(message, guides)
    envelope = teams_payload(content)
    slack = slack_payload(content)
    sections = [
        "<h2>Slack</h2>",
        "<p>Block Kit payload posted to the incoming webhook (fallback <code>text</code> first).</p>",
        _pre(orjson.dumps(slack, option=orjson.OPT_INDENT_2).decode()),
        "<h2>Console</h2>",
        "<p>What is printed when no webhook is configured.</p>",
        _pre(render_text(content)),
        "<details><summary>Teams message envelope (JSON)</summary>",
        _pre(orjson.dumps(envelope, option=orjson.OPT_INDENT_2).decode()),
        "</details>",
    ]
    heading = ("<h1>Alert preview</h1><h2>Teams</h2>"
               "<p>Adaptive Card as rendered by the Adaptive Cards SDK.</p>")
    try:
        result = check_cards([envelope], html=out, before_html=heading, after_html="\n".join(sections))
    except CardCheckUnavailable as exc:
        raise CommandError(f"cannot render the card: {exc}") from None
    if result.returncode not in (0, 1) or not out.is_file():
        raise CommandError(f"card rendering failed: {result.stderr.strip() or 'no output'}")
    return list(result.failures)


def _pre(text: str) -> str:
    return f'<pre style="white-space: pre-wrap; background: #fff; padding: 1em">{html.escape(text)}</pre>'
