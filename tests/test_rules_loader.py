"""The rule loader: Elastic's format runs unmodified; our tables are validated; bad files fail loudly."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from detection.cli.rules import rule_test_failures
from detection.rules import RuleError, load_rules
from detection.settings import BUNDLED_RULES_DIR, Settings

SEED_ID = "bbd1a775-8267-41fa-9232-20e5582596ac"
SEED_QUERY = (
    "event.dataset:o365.audit and event.provider:MicrosoftTeams and event.category:web and "
    "event.action:TeamsTenantSettingChanged and o365.audit.Name:\"Allow sideloading and interaction of "
    "custom apps\" and o365.audit.NewValue:True and event.outcome:success"
)

# An Elastic-style rule file as their repository ships it: no tables of ours at all.
ELASTIC_STYLE = '''
[metadata]
creation_date = "2021/07/20"
integration = ["o365"]
maturity = "production"
updated_date = "2024/05/21"

[rule]
author = ["Elastic"]
description = "Test description."
from = "now-30m"
index = ["filebeat-*", "logs-o365*"]
language = "kuery"
license = "Elastic License v2"
name = "Inbox forwarding rule created"
risk_score = 47
rule_id = "11111111-2222-4333-8444-555555555555"
severity = "medium"
tags = ["Domain: Cloud"]
timestamp_override = "event.ingested"
type = "query"
query = """
event.dataset:o365.audit and event.provider:Exchange and
event.category:web and event.action:("New-InboxRule" or "Set-InboxRule") and
    (
        o365.audit.Parameters.ForwardTo:* or
        o365.audit.Parameters.ForwardAsAttachmentTo:*
    )
    and event.outcome:success
"""

[[rule.threat]]
framework = "MITRE ATT&CK"
[[rule.threat.technique]]
id = "T1114"
name = "Email Collection"
reference = "https://attack.mitre.org/techniques/T1114/"

[rule.threat.tactic]
id = "TA0009"
name = "Collection"
reference = "https://attack.mitre.org/tactics/TA0009/"

[rule.investigation_fields]
field_names = ["user.id"]
'''


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_seed_rule_is_bundled_with_the_seed_semantics():
    rules = {r.rule_id: r for r in load_rules(BUNDLED_RULES_DIR).rules}
    seed = rules[SEED_ID]
    assert " ".join(seed.query.split()) == SEED_QUERY
    assert (seed.severity, seed.risk_score, seed.max_signals) == ("medium", 47, 100)
    assert [t["tactic"]["id"] for t in seed.threat] == ["TA0003"]
    assert set(seed.tags) == {"Domain: Cloud", "Data Source: Microsoft 365", "Use Case: Configuration Audit",
                              "Tactic: Persistence"}
    assert seed.suppression.group_by == ("organization.id", "user.id")
    assert seed.suppression.window == timedelta(minutes=60)
    assert seed.guide.investigation and seed.guide.response


def test_every_bundled_rule_has_passing_records_of_both_kinds():
    ruleset = load_rules(BUNDLED_RULES_DIR)
    assert ruleset.rules and not ruleset.skipped
    settings = Settings.from_env({})
    for rule in ruleset.rules:
        assert {t.expect_alert for t in rule.tests} == {True, False}, rule.path.name
        assert rule_test_failures(rule, settings) == [], rule.path.name


def test_an_elastic_rule_file_runs_unmodified(tmp_path):
    write(tmp_path, "elastic.toml", ELASTIC_STYLE)
    (rule,) = load_rules(tmp_path).rules
    assert rule.name == "Inbox forwarding rule created" and rule.max_signals == 100
    match = {"event": {"dataset": "o365.audit", "provider": "Exchange", "category": ["web"],
                       "action": "New-InboxRule", "outcome": "success"},
             "o365": {"audit": {"Parameters": {"ForwardTo": "drop@example.net"}}}}
    assert rule.predicate(match)
    match["o365"]["audit"]["Parameters"] = {"Name": "tidy"}
    assert not rule.predicate(match)


@pytest.mark.parametrize("rule_type", ["eql", "esql", "threshold", "new_terms", "machine_learning"])
def test_types_we_do_not_run_are_skipped_by_name(tmp_path, rule_type):
    write(tmp_path, "other.toml", ELASTIC_STYLE.replace('type = "query"', f'type = "{rule_type}"'))
    ruleset = load_rules(tmp_path)
    assert ruleset.rules == ()
    (skipped,) = ruleset.skipped
    assert skipped.name == "Inbox forwarding rule created" and rule_type in skipped.reason


def test_lucene_queries_are_skipped(tmp_path):
    write(tmp_path, "lucene.toml", ELASTIC_STYLE.replace('language = "kuery"', 'language = "lucene"'))
    assert "lucene" in load_rules(tmp_path).skipped[0].reason


@pytest.mark.parametrize(("change", "message"), [
    (('severity = "medium"', 'severity = "urgent"'), "rule.severity must be one of"),
    (('risk_score = 47', 'risk_score = 470'), "rule.risk_score must be between 0 and 100"),
    (('risk_score = 47', 'risk_score = "47"'), "rule.risk_score must be an integer"),
    (('rule_id = "11111111-2222-4333-8444-555555555555"\n', ''), "rule.rule_id is required"),
    (('event.outcome:success\n"""', 'event.outcome:(success\n"""'), "rule.query is not valid KQL"),
    (('name = "Inbox', 'name = "Inbox\n'), "not valid TOML"),
    (('type = "query"\n', ''), "rule.type is required"),
    (('type = "query"', 'type = ["query"]'), "rule.type must be a string, got list"),
    (('language = "kuery"', 'language = ["kuery"]'), "rule.language must be a string, got list"),
    (('id = "T1114"\n', ''), "rule.threat[0].technique[0].id is required"),
    (('id = "T1114"', 'id = 1114'), "rule.threat[0].technique[0].id must be a string, got int"),
    (('reference = "https://attack.mitre.org/tactics/TA0009/"\n', ''),
     "rule.threat[0].tactic.reference is required"),
    (('reference = "https://attack.mitre.org/techniques/T1114/"\n',
      'reference = "https://attack.mitre.org/techniques/T1114/"\n'
      '[[rule.threat.technique.subtechnique]]\nid = "T1114.003"\nname = "Email Forwarding Rule"\n'),
     "rule.threat[0].technique[0].subtechnique[0].reference is required"),
    (('[metadata]', 'tests = 5\n[metadata]'), "bad.toml: tests must be a list, got int"),
])
def test_invalid_files_fail_with_the_file_and_the_reason(tmp_path, change, message):
    path = write(tmp_path, "bad.toml", ELASTIC_STYLE.replace(*change))
    with pytest.raises(RuleError) as raised:
        load_rules(tmp_path)
    assert str(raised.value).startswith(str(path))
    assert message in str(raised.value)


def test_query_errors_carry_line_and_column(tmp_path):
    write(tmp_path, "bad.toml", ELASTIC_STYLE.replace("event.outcome:success", "event.outcome:success and"))
    with pytest.raises(RuleError, match=r"line \d+"):
        load_rules(tmp_path)


@pytest.mark.parametrize(("table", "message"), [
    ('[[tests]]\nexpect = "maybe"\nrecord = "{}"\n', 'tests[0].expect must be "alert" or "no_alert"'),
    ('[[tests]]\nexpect = "alert"\nrecord = "{not json"\n', "tests[0].record is not valid JSON"),
    ('[[tests]]\nexpect = "alert"\nrecord = "[1]"\n', "tests[0].record must be a JSON object"),
    ('[suppression]\nwindow = "soon"\n', "suppression.window: expected a duration"),
    ('[suppression]\nmissing = "drop"\n', 'suppression.missing must be "group" or "separate"'),
    ('[exceptions]\nkql = ["user.id:(a"]\n', "exceptions.kql[0] is not valid KQL"),
    ('[suppression]\nwindw = "10m"\n',
     "suppression has unknown keys windw (it takes group_by, missing, window)"),
    ('[exceptions]\nquery = ["user.id:a"]\n', "exceptions has unknown keys query (it takes kql)"),
    ('[alert]\nnew = "o365.audit.NewValue"\n', "alert has unknown keys new (it takes new_value, old_value)"),
    ('[guide]\nsteps = ["x"]\n', "guide has unknown keys steps"),
    ('[[tests]]\nexpect = "alert"\nrecord = "{}"\nexpected = "alert"\n',
     "tests[0] has unknown keys expected"),
])
def test_our_tables_are_validated(tmp_path, table, message):
    write(tmp_path, "bad.toml", ELASTIC_STYLE + "\n" + table)
    with pytest.raises(RuleError, match=re.escape(message)):
        load_rules(tmp_path)


def test_duplicate_rule_ids_are_refused(tmp_path):
    write(tmp_path, "a.toml", ELASTIC_STYLE)
    write(tmp_path, "b.toml", ELASTIC_STYLE)
    with pytest.raises(RuleError, match="also used by"):
        load_rules(tmp_path)


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(RuleError, match="does not exist"):
        load_rules(tmp_path / "nope")
