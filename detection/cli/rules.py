"""`rules list` and `rules test`: what the rules folder holds, and whether each rule still does its job.

Each rule carries its own records that must and must not alert; `rules test` runs them through the
real engine, with the prefilter on and off, so a rule edit that breaks either path is caught.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from detection.cli.common import (
    add_rules_option,
    add_settings_option,
    load_ruleset,
    load_settings,
    run_command,
)
from detection.engine import detect
from detection.rules import Rule
from detection.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rules", help="list the rules or run their own test records",
                                   description="List the loaded rules, or run each rule's test records.")
    actions = parser.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="one line per rule: id, type, severity, risk, name",
                                 description="List loaded and skipped rules.")
    listing.add_argument("--json", action="store_true", help="one JSON object per rule instead")
    testing = actions.add_parser("test", help="run every rule's [[tests]] records",
                                 description="Run every rule's test records through the engine with the "
                                             "prefilter on and off. Exit 1 when any expectation fails.")
    for sub in (listing, testing):
        add_rules_option(sub)
        add_settings_option(sub)
    listing.set_defaults(func=lambda args: run_command(run_list, args))
    testing.set_defaults(func=lambda args: run_command(run_test, args))


def run_list(args: argparse.Namespace) -> int:
    ruleset = load_ruleset(load_settings(args), args)
    for rule in ruleset.rules:
        if args.json:
            sys.stdout.buffer.write(orjson.dumps({
                "rule_id": rule.rule_id, "name": rule.name, "type": rule.type, "severity": rule.severity,
                "risk_score": rule.risk_score, "max_signals": rule.max_signals, "tests": len(rule.tests),
                "file": rule.path.name, "status": "loaded"}) + b"\n")
        else:
            print(f"{rule.rule_id}  {rule.type:<6} {rule.severity:<8} {rule.risk_score:>3}  {rule.name}")
    for skipped in ruleset.skipped:
        if args.json:
            sys.stdout.buffer.write(orjson.dumps({
                "rule_id": skipped.rule_id, "name": skipped.name, "file": skipped.path.name,
                "status": "skipped", "reason": skipped.reason}) + b"\n")
        else:
            print(f"{skipped.rule_id}  skipped: {skipped.name} — {skipped.reason}")
    return 0


def rule_test_failures(rule: Rule, settings: Settings) -> list[str]:
    """Every way the rule's own test records disagree with what they expect (empty: all pass)."""
    failures = []
    for test in rule.tests:
        body = orjson.dumps(test.record)
        for prefilter in (True, False):
            result = detect([body], [rule], settings, prefilter=prefilter)
            alerted = bool(result.alerts or result.overflow)
            if alerted != test.expect_alert:
                path = "prefilter on" if prefilter else "prefilter off"
                want = "an alert" if test.expect_alert else "no alert"
                failures.append(f"{rule.path.name}: {test.name!r}: expected {want} ({path})")
    kinds = {t.expect_alert for t in rule.tests}
    if rule.tests and kinds != {True, False}:
        failures.append(f"{rule.path.name}: needs at least one record that alerts and one that does not")
    return failures


def run_test(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    ruleset = load_ruleset(settings, args)
    failed = 0
    for rule in ruleset.rules:
        failures = rule_test_failures(rule, settings)
        failed += bool(failures)
        status = "FAIL" if failures else "ok" if rule.tests else "none"
        print(f"{status:<4} {rule.name} ({len(rule.tests)} records)")
        for failure in failures:
            print(f"     {failure}")
    untested = sum(1 for rule in ruleset.rules if not rule.tests)
    passed = len(ruleset.rules) - failed - untested
    print(f"rules: {passed} passed, {failed} failed, {untested} without test records")
    return 1 if failed else 0
