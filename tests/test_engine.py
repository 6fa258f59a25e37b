"""The engine: matches become alerts, nothing is dropped without a count, and a batch always finishes."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import orjson
import pytest

from detection.engine import detect
from detection.rules import load_rules
from detection.rules.loader import parse_rule
from detection.settings import Settings

SEED_ID = "bbd1a775-8267-41fa-9232-20e5582596ac"
SETTINGS = Settings.from_env({})


def make_rule(query: str, *, rule_id: str = "r-1", max_signals: int = 100, exceptions: tuple[str, ...] = (),
              name: str = "Test rule"):
    document = {
        "rule": {"rule_id": rule_id, "name": name, "description": "d", "type": "query",
                 "language": "kuery", "query": query, "severity": "high", "risk_score": 73,
                 "max_signals": max_signals,
                 "threat": [{"framework": "MITRE ATT&CK", "tactic": {
                     "id": "TA0003", "name": "Persistence", "reference": "https://attack.mitre.org/tactics/TA0003/"}}]},
        "exceptions": {"kql": list(exceptions)},
    }
    rule = parse_rule(document, Path(f"{rule_id}.toml"))
    assert not hasattr(rule, "reason")
    return rule


def record(n: int, operation: str = "TeamsTenantSettingChanged", **extra) -> dict:
    raw = {"CreationTime": f"2026-11-30T14:{n // 60 % 60:02d}:{n % 60:02d}", "Id": f"rec-{n}",
           "Operation": operation, "OrganizationId": "4B2C9E11-7D3A-4F0E-9C55-1A2B3C4D5E6F",
           "RecordType": 25, "UserType": 2, "Version": 1, "Workload": "MicrosoftTeams",
           "UserId": f"admin{n}@contoso.onmicrosoft.com", "ClientIP": "203.0.113.24",
           "Name": "Allow sideloading and interaction of custom apps", "OldValue": "False",
           "NewValue": "True"}
    raw.update(extra)
    return raw


@pytest.fixture(scope="module")
def seed_rules():
    return load_rules(SETTINGS.rules_dir).rules


@pytest.fixture(params=[True, False], ids=["prefilter", "no-prefilter"])
def prefilter(request):
    return request.param


def test_a_matching_record_becomes_an_alert(seed_rules, prefilter):
    bodies = [orjson.dumps([record(1), record(2, operation="TeamsSessionStarted")])]
    result = detect(bodies, seed_rules, SETTINGS, prefilter=prefilter)
    assert [a.rule_id for a in result.alerts] == [SEED_ID]
    alert = result.alerts[0]
    assert (alert.record_id, alert.tenant_id, alert.user_id, alert.source_ip) == (
        "rec-1", "4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f", "admin1@contoso.onmicrosoft.com", "203.0.113.24")
    assert (alert.old_value, alert.new_value, alert.severity, alert.risk_score) == (
        "False", "True", "medium", 47)
    assert alert.event_time.startswith("2026-11-30T14:00:01")
    assert alert.raw == record(1)
    assert result.stats.matches == {SEED_ID: 1}
    assert result.overflow == [] and result.excepted == []


@pytest.mark.parametrize("change", [
    {"NewValue": "False"}, {"NewValue": "true"}, {"Name": "Allow guest access in Teams"},
    {"ResultStatus": "Failed"}, {"Workload": "Exchange"}, {"Operation": "TeamsAdminAction"},
])
def test_near_misses_do_not_alert(seed_rules, prefilter, change):
    result = detect([orjson.dumps(record(1, **change))], seed_rules, SETTINGS, prefilter=prefilter)
    assert result.alerts == []
    assert result.stats.matches == {}


def test_defender_timestamp_is_the_event_time(seed_rules, prefilter):
    body = orjson.dumps({"records": [{"properties": {"Timestamp": "2026-11-30T16:45:09.1234567Z",
                                                     "RawEventData": orjson.dumps(record(3)).decode()}}]})
    (alert,) = detect([body], seed_rules, SETTINGS, prefilter=prefilter).alerts
    assert alert.event_time.startswith("2026-11-30T16:45:09")


def test_alerts_beyond_max_signals_overflow_and_are_counted(prefilter):
    rule = make_rule("event.action:TeamsTenantSettingChanged", max_signals=2)
    bodies = [orjson.dumps([record(i) for i in range(3)]), orjson.dumps([record(i) for i in range(3, 5)])]
    result = detect(bodies, [rule], SETTINGS, prefilter=prefilter)
    assert [a.record_id for a in result.alerts] == ["rec-0", "rec-1"]
    assert [a.record_id for a in result.overflow] == ["rec-2", "rec-3", "rec-4"]
    assert result.stats.matches == {"r-1": 5}
    assert result.stats.overflow == {"r-1": 3}


def test_max_signals_is_per_rule(prefilter):
    one = make_rule("event.action:TeamsTenantSettingChanged", rule_id="one", max_signals=1)
    two = make_rule("event.provider:MicrosoftTeams", rule_id="two", max_signals=5)
    result = detect([orjson.dumps([record(i) for i in range(3)])], [one, two], SETTINGS, prefilter=prefilter)
    assert [(a.rule_id, a.record_id) for a in result.alerts] == [
        ("one", "rec-0"), ("two", "rec-0"), ("two", "rec-1"), ("two", "rec-2")]
    assert result.stats.overflow == {"one": 2}


def test_rule_exceptions_move_matches_to_excepted(prefilter):
    rule = make_rule("event.action:TeamsTenantSettingChanged",
                     exceptions=('user.id:"admin1@contoso.onmicrosoft.com"',))
    result = detect([orjson.dumps([record(1), record(2)])], [rule], SETTINGS, prefilter=prefilter)
    assert [a.record_id for a in result.alerts] == ["rec-2"]
    assert [a.record_id for a in result.excepted] == ["rec-1"]
    assert result.stats.excepted == {"r-1": 1}
    assert result.stats.matches == {"r-1": 2}


def test_global_exceptions_apply_to_every_rule_and_do_not_count_against_max_signals(prefilter):
    settings = Settings.from_env({"EXCEPTIONS_KQL": "source.ip:203.0.113.99"})
    rules = [make_rule("event.action:TeamsTenantSettingChanged", rule_id="a", max_signals=1),
             make_rule("event.provider:MicrosoftTeams", rule_id="b")]
    bodies = [orjson.dumps([record(1, ClientIP="203.0.113.99"), record(2)])]
    result = detect(bodies, rules, settings, prefilter=prefilter)
    assert [(a.rule_id, a.record_id) for a in result.excepted] == [("a", "rec-1"), ("b", "rec-1")]
    assert [(a.rule_id, a.record_id) for a in result.alerts] == [("a", "rec-2"), ("b", "rec-2")]
    assert result.overflow == []


def test_the_same_record_twice_in_a_batch_alerts_once(seed_rules, prefilter):
    body = orjson.dumps([record(1)])
    result = detect([body, gzip.compress(body), orjson.dumps(record(1))], seed_rules, SETTINGS,
                    prefilter=prefilter)
    assert [a.record_id for a in result.alerts] == ["rec-1"]
    assert result.stats.duplicates == 2
    assert result.stats.matches == {SEED_ID: 1}


def test_records_without_an_id_are_told_apart_by_content(prefilter):
    rule = make_rule("event.action:TeamsTenantSettingChanged")
    first, second = record(1), record(2)
    del first["Id"], second["Id"]
    result = detect([orjson.dumps([first, second, first])], [rule], SETTINGS, prefilter=prefilter)
    assert len(result.alerts) == 2 and result.stats.duplicates == 1


def test_statistics_of_a_mixed_batch(seed_rules, prefilter):
    bodies = [
        orjson.dumps([record(1), record(2, operation="FileAccessed", Workload="SharePoint")]),
        b"{truncated",
        gzip.compress(orjson.dumps({"records": [record(3)]})),
        b"\n".join([orjson.dumps(record(4, NewValue="False")), b"[oops"]),
        b"\x1f\x8bnot gzip",
        b"",
        orjson.dumps([{"Id": "q", "Operation": "FileAccessed", "Workload": "SharePoint"}] * 3),
    ]
    result = detect(bodies, seed_rules, SETTINGS, prefilter=prefilter)
    stats = result.stats
    assert [a.record_id for a in result.alerts] == ["rec-1", "rec-3"]
    assert stats.bodies == 7
    # Broken bodies are parsed (and counted) on both paths; only the quiet last one may be set aside.
    assert stats.skips == {"invalid_json": 2, "invalid_gzip": 1, "empty": 1}
    assert [(s.reason, s.body_index) for s in stats.skip_list] == [
        ("invalid_json", 1), ("invalid_json", 3), ("invalid_gzip", 4), ("empty", 5)]
    assert (stats.bodies_parsed, stats.bodies_prefiltered, stats.records) == (
        (5, 1, 4) if prefilter else (6, 0, 7))
    as_dict = stats.to_dict()
    assert as_dict["matches"] == {SEED_ID: 2}
    assert set(as_dict) == {"bodies", "bodies_parsed", "bodies_prefiltered", "records", "records_mapped",
                            "skips", "matches", "overflow", "excepted", "duplicates"}
    orjson.dumps(as_dict)


def test_prefilter_argument_none_follows_the_setting(seed_rules):
    bodies = [orjson.dumps([record(1, operation="FileAccessed")])] * 3
    assert detect(bodies, seed_rules, Settings.from_env({"PREFILTER": "false"})).stats.bodies_parsed == 3
    assert detect(bodies, seed_rules, Settings.from_env({"PREFILTER": "true"})).stats.bodies_parsed == 0
    assert detect(bodies, seed_rules, Settings.from_env({"PREFILTER": "true"}),
                  prefilter=False).stats.bodies_parsed == 3


def test_a_rule_set_is_accepted_as_well_as_a_sequence():
    ruleset = load_rules(SETTINGS.rules_dir)
    assert len(detect([orjson.dumps(record(1))], ruleset, SETTINGS).alerts) == 1


def test_limits_come_from_settings(seed_rules, prefilter):
    settings = Settings.from_env({"MAX_RECORDS_PER_BODY": "2"})
    result = detect([orjson.dumps([record(1), record(2), record(3)])], seed_rules, settings,
                    prefilter=prefilter)
    assert [a.record_id for a in result.alerts] == ["rec-1", "rec-2"]
    assert result.stats.skips == {"too_many_records": 1}


def test_a_failing_predicate_costs_one_evaluation_not_the_batch(prefilter):
    good = make_rule("event.action:TeamsTenantSettingChanged", rule_id="good")
    bad = dataclasses.replace(make_rule("event.action:TeamsTenantSettingChanged", rule_id="bad"),
                              predicate=lambda doc: 1 / 0)
    result = detect([orjson.dumps([record(1), record(2)])], [bad, good], SETTINGS, prefilter=prefilter)
    assert [(a.rule_id, a.record_id) for a in result.alerts] == [("good", "rec-1"), ("good", "rec-2")]
    assert result.stats.skips == {"rule_error": 2}
    assert "bad" in result.stats.skip_list[0].detail


def test_a_record_the_mapping_fails_on_costs_only_itself(seed_rules, prefilter, monkeypatch):
    import detection.engine

    real = detection.engine.to_ecs

    def failing_on_rec_1(raw, event_time=None):
        if raw["Id"] == "rec-1":
            raise KeyError("simulated mapping bug")
        return real(raw, event_time)

    monkeypatch.setattr(detection.engine, "to_ecs", failing_on_rec_1)
    result = detect([orjson.dumps([record(1), record(2)]), orjson.dumps(record(3))], seed_rules, SETTINGS,
                    prefilter=prefilter)
    assert [a.record_id for a in result.alerts] == ["rec-2", "rec-3"]
    assert result.stats.skips == {"mapping_error": 1}
    assert result.stats.skip_list[0].body_index == 0 and "KeyError" in result.stats.skip_list[0].detail


def test_no_rules_no_alerts():
    result = detect([orjson.dumps(record(1))], [], SETTINGS)
    assert result.alerts == [] and result.stats.bodies == 1


def test_an_invalid_global_exception_query_fails_when_settings_are_read():
    from detection.settings import SettingsError

    with pytest.raises(SettingsError, match=r"EXCEPTIONS_KQL.*line 1, column"):
        Settings.from_env({"EXCEPTIONS_KQL": "user.id:(x"})


def test_the_deepest_nesting_the_depth_setting_accepts_still_maps_and_alerts(seed_rules, prefilter):
    """The mapping and the predicates recurse once per level and an alert wraps its record a few levels
    down: the setting's ceiling keeps every record it lets through within the stack and within what
    JSON output accepts, and a higher value fails when settings are read."""
    from detection.settings import MAX_NESTING, SettingsError

    with pytest.raises(SettingsError, match="MAX_DEPTH"):
        Settings.from_env({"MAX_DEPTH": str(MAX_NESTING + 1)})
    settings = Settings.from_env({"MAX_DEPTH": str(MAX_NESTING)})
    deep: object = "leaf"
    for _ in range(MAX_NESTING - 1):  # the record itself is one level
        deep = {"x": deep}
    raw = record(1, Deep=deep)
    result = detect([orjson.dumps(raw)], seed_rules, settings, prefilter=prefilter)
    assert [a.record_id for a in result.alerts] == ["rec-1"]
    assert not result.stats.skips
    assert orjson.loads(orjson.dumps(result.alerts[0].to_dict()))["raw"]["Deep"] == deep
