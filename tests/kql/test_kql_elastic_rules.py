"""Elastic's own Microsoft 365 rule queries: all of them parse and compile, and a few evaluate as intended.

The queries are read from the shared conformance folder at test time, never copied into the project.
"""

import json
from pathlib import Path

import pytest

from detection.kql import compile_query, fields, parse

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
RULES_FILE = SHARED / "conformance" / "elastic-o365" / "rules-kuery.json"

pytestmark = pytest.mark.skipif(
    not RULES_FILE.is_file(), reason=f"Elastic's rule queries are not available at {RULES_FILE}"
)


def load_rules() -> list[dict]:
    if not RULES_FILE.is_file():
        return []
    return json.loads(RULES_FILE.read_text(encoding="utf-8"))


RULES = load_rules()


def rule_named(fragment: str) -> str:
    (query,) = [rule["query"] for rule in RULES if fragment in rule["name"]]
    return query


def test_all_forty_queries_are_present():
    assert len(RULES) == 40


@pytest.mark.parametrize("rule", RULES, ids=[rule["name"] for rule in RULES])
def test_query_parses_and_compiles(rule):
    node = parse(rule["query"])
    predicate = compile_query(node)
    assert predicate({}) is False  # every rule needs at least one field to be present
    assert fields(node)


def test_inbox_rule_evasion():
    query = rule_named("Inbox Phishing Evasion Rule Created")
    base = {
        "data_stream": {"dataset": "o365.audit"},
        "event": {"action": "New-InboxRule", "outcome": "success"},
    }

    def doc(**parameters):
        return {**base, "o365": {"audit": {"Parameters": parameters}}}

    predicate = compile_query(query)
    assert predicate(doc(SubjectContainsWords="Urgent invoice due", DeleteMessage="True"))
    assert predicate(doc(WithinSizeRangeMinimum=512, MoveToFolder="Deleted Items"))
    assert predicate(doc(BodyContainsWords="\x00", DeleteMessage="True"))
    assert not predicate(doc(SubjectContainsWords="Urgent Invoice due", DeleteMessage="True"))  # case
    assert not predicate(doc(SubjectContainsWords="invoice", DeleteMessage="False"))
    assert not predicate(doc(WithinSizeRangeMinimum=4096, MoveToFolder="Deleted Items"))


def test_login_from_atypical_region_exclusions():
    query = rule_named("Login from Atypical Region")
    predicate = compile_query(query)

    def doc(**audit_changes):
        audit = {
            "Target": [{"Type": 0, "ID": "x"}],
            "UserId": "alice@example.com",
            "ApplicationId": "00000000-0000-0000-0000-000000000001",
            "ExtendedProperties": {"RequestType": "OAuth2:Token"},
        }
        audit.update(audit_changes)
        return {
            "data_stream": {"dataset": "o365.audit"},
            "event": {"provider": "AzureActiveDirectory", "action": "UserLoggedIn", "outcome": "success"},
            "source": {"geo": {"country_name": "Iceland", "region_name": "Capital"}},
            "user_agent": {"original": "Mozilla/5.0 (Windows NT 10.0)"},
            "o365": {"audit": audit},
        }

    assert predicate(doc())
    assert not predicate(doc(UserId="Not Available"))
    assert not predicate(doc(ApplicationId="29d9ed98-a469-4536-ade2-f981bc1d605e"))
    assert not predicate(doc(ExtendedProperties={"RequestType": "Login:resume"}))
    assert not predicate(doc(Target=[{"Type": 1}]))
    excluded_agent = doc()
    excluded_agent["user_agent"]["original"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"
    assert not predicate(excluded_agent)
    no_region = doc()
    del no_region["source"]["geo"]["region_name"]
    assert not predicate(no_region)


def test_high_risk_permission_excludes_system_accounts():
    query = rule_named("High-Risk Permission Delegated")
    predicate = compile_query(query)

    def doc(user_id):
        return {
            "data_stream": {"dataset": "o365.audit"},
            "event": {"provider": "Exchange", "outcome": "success", "action": "Add-MailboxPermission"},
            "o365": {"audit": {"UserType": "2", "Parameters": {"AccessRights": "FullAccess"}}},
            "user": {"id": user_id},
        }

    assert predicate(doc("admin@example.com"))
    assert not predicate(doc("NT AUTHORITY\\SYSTEM (w3wp)"))
