"""The custom-app rules for today's record shapes, taken together: one change never alerts twice."""

from __future__ import annotations

import orjson
import pytest

from detection.engine import detect
from detection.rules import load_rules
from detection.settings import BUNDLED_RULES_DIR, Settings

ENABLED_API = "6ab3e929-b15e-476b-910f-c7b99449b230"
POLICY_API = "8b74c58a-4c19-4410-8161-7eaa48a2e348"
UNKNOWN_API = "0916cb75-d528-4f29-9e02-1bbd86ebf735"
POLICY_CMDLET = "99ea7a4f-93d8-4ece-b710-5ccb7eea72e3"
ORG_CMDLET = "3dd17baa-dd83-433c-a417-4c64a3c74ce4"
CATALOG = "6ae6bc28-1ebe-4f2f-8fac-47c31672795c"
SEED = "bbd1a775-8267-41fa-9232-20e5582596ac"
# Rules that each say "custom apps may have been switched on": at most one may fire per record.
ENABLEMENT = {ENABLED_API, POLICY_API, UNKNOWN_API, POLICY_CMDLET, ORG_CMDLET, SEED}

RULES = load_rules(BUNDLED_RULES_DIR).rules
BY_ID = {rule.rule_id: rule for rule in RULES}
ALL_RECORDS = [(rule.rule_id, test) for rule in RULES for test in rule.tests]


def alerting_rules(record: dict) -> set[str]:
    result = detect([orjson.dumps(record)], RULES, Settings())
    return {alert.rule_id for alert in result.alerts}


@pytest.mark.parametrize(("owner", "test"), ALL_RECORDS, ids=[f"{o[:8]}:{t.name}" for o, t in ALL_RECORDS])
def test_each_record_alerts_its_own_rule_and_no_second_enablement_rule(owner, test):
    fired = alerting_rules(test.record)
    assert (owner in fired) == test.expect_alert
    assert len(fired & ENABLEMENT) <= 1, fired


def test_the_new_rules_keep_the_seed_severity_and_the_unknown_ones_are_lower():
    for rule_id in (ENABLED_API, POLICY_API, POLICY_CMDLET, ORG_CMDLET):
        assert (BY_ID[rule_id].severity, BY_ID[rule_id].risk_score) == ("medium", 47)
    for rule_id in (UNKNOWN_API, CATALOG):
        assert BY_ID[rule_id].severity == "low"
    assert "Direction Unknown" in BY_ID[UNKNOWN_API].name


def test_the_enabled_alert_carries_the_before_and_after_values():
    (test,) = [t for t in BY_ID[ENABLED_API].tests if t.name.startswith("org-wide custom app interaction")]
    (alert,) = detect([orjson.dumps(test.record)], [BY_ID[ENABLED_API]], Settings()).alerts
    assert (alert.old_value, alert.new_value) == ("False", "True")
    (cmdlet,) = [t for t in BY_ID[POLICY_CMDLET].tests if t.expect_alert][:1]
    (alert,) = detect([orjson.dumps(cmdlet.record)], [BY_ID[POLICY_CMDLET]], Settings()).alerts
    assert alert.new_value == "True" and alert.old_value is None


def test_every_new_rule_says_what_its_record_does_not_prove():
    for rule_id in (ENABLED_API, POLICY_API, UNKNOWN_API, POLICY_CMDLET, ORG_CMDLET, CATALOG):
        rule = BY_ID[rule_id]
        assert "### What the record proves, and what it does not" in rule.note
        assert rule.guide.investigation and rule.guide.response
        assert rule.suppression.group_by == ("organization.id", "user.id")
        assert rule.suppression.window.total_seconds() == 3600
