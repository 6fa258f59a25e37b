"""The prefilter: which literals each query shape requires, why escapes cannot fool it, and proof on a
varied corpus that turning it on never changes an alert."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from types import MappingProxyType

import orjson
import pytest

from detection.engine import detect
from detection.kql import compile_query, parse
from detection.prefilter import (
    DEFAULT_FIND,
    Atom,
    Prefilter,
    byte_safe,
    clause_literals,
    requirement,
)
from detection.rules import load_rules
from detection.samplegen import generate_bodies
from detection.settings import Settings


@dataclass(frozen=True)
class Src:
    raw_key: str
    renames: MappingProxyType


SOURCES = {
    "event.action": Src("Operation", MappingProxyType({"TeamCreated": "added-group-account-to",
                                                       "MemberAdded": "added-users-to-group"})),
    "event.provider": Src("Workload", MappingProxyType({})),
    "o365.audit.Name": Src("Name", MappingProxyType({})),
    "o365.audit.NewValue": Src("NewValue", MappingProxyType({})),
    "o365.audit.AdminActionDetail": Src("AdminActionDetail", MappingProxyType({})),
}


def lookup(field: str):
    return SOURCES.get(field)


def req(query: str):
    return requirement(parse(query), lookup)


def atom(key: str, *exact: str, pieces: tuple[str, ...] = ()) -> Atom:
    return Atom(key, frozenset(exact), pieces)


@dataclass(frozen=True)
class FakeRule:
    """Just what the prefilter reads of a rule."""

    rule_id: str
    query: str

    @property
    def ast(self):
        return parse(self.query)


def prefilter(*queries: str, find=DEFAULT_FIND) -> Prefilter:
    return Prefilter([FakeRule(str(i), q) for i, q in enumerate(queries)], lookup=lookup, find=find)


FINDS = pytest.mark.parametrize("find", [DEFAULT_FIND, bytes.find], ids=["default", "bytes.find"])


# ---- literal derivation per query shape ----

def test_match_on_a_verbatim_field():
    assert req("event.action:TeamsTenantSettingChanged") == (
        (atom("Operation", "TeamsTenantSettingChanged"),),)


def test_renames_are_inverted():
    assert req("event.action:added-group-account-to") == (
        (atom("Operation", "added-group-account-to", "TeamCreated"),),)


def test_computed_fields_and_constants_give_nothing():
    assert req("event.outcome:success") == ()
    assert req("event.dataset:o365.audit and event.category:web") == ()


def test_and_keeps_every_child_requirement():
    assert req('event.dataset:o365.audit and event.provider:MicrosoftTeams and o365.audit.Name:"A b"') == (
        (atom("Workload", "MicrosoftTeams"),), (atom("Name", "A b"),))


def test_or_joins_each_branch_into_one_clause():
    assert req("event.action:AppInstalled or o365.audit.Name:x") == (
        (atom("Operation", "AppInstalled"), atom("Name", "x")),)


def test_or_with_a_branch_without_requirement_has_none():
    assert req("event.action:AppInstalled or event.outcome:failure") == ()
    assert req("event.action:AppInstalled or not event.action:x") == ()


def test_or_of_ands_takes_the_strongest_clause_of_each_branch():
    got = req("(event.provider:MicrosoftTeams and event.action:TeamsTenantSettingChanged) or "
              "(event.provider:Exchange and event.action:New-InboxRule)")
    assert got == ((atom("Operation", "TeamsTenantSettingChanged"), atom("Operation", "New-InboxRule")),)


@pytest.mark.parametrize("query", [
    "not event.action:x",
    "event.action:*",
    "event.action < m",
    "o365.audit.Parameters:{Name:x}",
    "TeamsTenantSettingChanged",
    "*",
    "o365.audit.*:x",
    "event.action:(not x)",
])
def test_shapes_that_require_nothing(query):
    assert req(query) == ()


def test_and_with_a_negated_part_keeps_the_positive_part():
    assert req("event.action:x and not o365.audit.Name:y") == ((atom("Operation", "x"),),)


def test_value_lists():
    assert req("event.action:(a or b)") == ((atom("Operation", "a"), atom("Operation", "b")),)
    assert req("o365.audit.Name:(a and b)") == ((atom("Name", "a"),), (atom("Name", "b"),))
    assert req("o365.audit.Name:(a or not b)") == ()


def test_wildcard_values_keep_their_pieces():
    got = req("o365.audit.AdminActionDetail:*/configurations/TeamsAppSetupPolicy/*")
    assert got == ((atom("AdminActionDetail", pieces=("/configurations/TeamsAppSetupPolicy/",)),),)
    assert clause_literals(got[0]) == (b"/configurations/TeamsAppSetupPolicy/",)


def test_wildcard_over_renamed_values_adds_the_raw_names():
    (clause,) = req("event.action:added-*")
    assert clause == (atom("Operation", "MemberAdded", "TeamCreated", pieces=("added-",)),)
    assert set(clause_literals(clause)) == {b"MemberAdded", b"TeamCreated", b"added-"}


def test_a_literal_containing_another_of_its_clause_is_dropped():
    (clause,) = req("o365.audit.AdminActionDetail:(*/a/Policy or */a/Policy/*)")
    assert clause_literals(clause) == (b"/a/Policy",)


@pytest.mark.parametrize("text, safe", [
    ("TeamsTenantSettingChanged", True),
    ("Allow sideloading and interaction of custom apps", True),
    ("/configurations/x", True),
    ('say "hi"', False),
    ("C:\\path", False),
    ("café", False),
    ("tab\there", False),
    ("25", False),
    ("-1.5e3", False),
    ("true", False),
    ("null", False),
    ("", False),
])
def test_byte_safe_literals(text, safe):
    assert byte_safe(text) is safe


def test_unsafe_literal_keeps_the_record_requirement_but_not_the_byte_one():
    (clause,) = req('o365.audit.Name:"caf\u00e9"')
    assert clause == (atom("Name", "caf\u00e9"),)
    assert clause_literals(clause) is None
    pf = prefilter('o365.audit.Name:"caf\u00e9"')
    assert pf.parse_all
    assert pf.rules_for({"Name": "caf\u00e9"}) and not pf.rules_for({"Name": "cafe"})


def test_a_rule_with_no_byte_requirement_makes_every_body_a_candidate():
    pf = prefilter("event.action:TeamsTenantSettingChanged", "event.outcome:failure")
    assert pf.body_may_match(b'[{"Operation": "FileAccessed"}]')
    assert not pf.checks_records


def test_clauses_shared_by_rules_are_searched_first():
    pf = prefilter("event.provider:MicrosoftTeams and event.action:AppInstalled",
                   "event.provider:MicrosoftTeams and event.action:TeamsTenantSettingChanged")
    assert all(clauses[0] == (b"MicrosoftTeams",) for clauses in pf.literal_sets)


# ---- body level: soundness against JSON spellings ----

SEED = ('event.provider:MicrosoftTeams and event.action:TeamsTenantSettingChanged and '
        'o365.audit.Name:"Allow sideloading and interaction of custom apps" and o365.audit.NewValue:True')
MATCHING = {"Id": "1", "Workload": "MicrosoftTeams", "Operation": "TeamsTenantSettingChanged",
            "Name": "Allow sideloading and interaction of custom apps", "NewValue": "True"}


def escape_every_char(value: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in value)


@FINDS
def test_plain_literals(find):
    pf = prefilter(SEED, find=find)
    assert pf.body_may_match(orjson.dumps([MATCHING]))
    assert not pf.body_may_match(orjson.dumps([{**MATCHING, "Operation": "TeamsSessionStarted"}]))
    assert not pf.body_may_match(b'[{"Operation": "FileAccessed", "Path": "\\\\Inbox\\\\updates"}]')


@FINDS
@pytest.mark.parametrize("escape", [
    lambda v: "\\u0054" + v[1:],  # one letter escaped
    lambda v: v[:5] + "\\u0054" + v[6:],
    lambda v: escape_every_char(v),
    lambda v: v.replace("T", "\\u0054"),
])
def test_unicode_escapes_of_literal_characters_force_a_parse(escape, find):
    pf = prefilter(SEED, find=find)
    body = b'{"Id": "1", "Workload": "MicrosoftTeams", "Operation": "%s"}' % \
        escape("TeamsTenantSettingChanged").encode()
    assert orjson.loads(body)["Operation"] == "TeamsTenantSettingChanged"
    assert pf.body_may_match(body)


@FINDS
def test_upper_case_hex_escapes_count_too(find):
    pf = prefilter("event.action:TeamsJoin", find=find)
    assert pf.body_may_match(b'{"Operation": "Teams\\u004Aoin"}')
    assert pf.body_may_match(b'{"Operation": "Teams\\u004aoin"}')


@FINDS
def test_escapes_of_other_characters_do_not(find):
    pf = prefilter(SEED, find=find)
    # é (non-ASCII), ' and < are in no literal: such bodies still cannot match and are skipped.
    body = b'[{"Operation": "FileAccessed", "UserId": "Jos\\u00e9", "N": "O\\u0027Brien \\u003Cx\\u003E"}]'
    assert not pf.body_may_match(body)


@FINDS
def test_escaped_backslash_followed_by_u_is_not_an_escape(find):
    pf = prefilter(SEED, find=find)
    body = b'[{"Operation": "MoveToDeletedItems", "Path": "\\\\Inbox\\\\updates\\\\urgent\\\\u2025"}]'
    assert not pf.body_may_match(body)


@FINDS
def test_escape_inside_a_raw_event_data_string_is_caught(find):
    """Inside a JSON string holding JSON, an inner `\\u0054` is written `\\\\u0054` by the outer level."""
    pf = prefilter(SEED, find=find)
    inner = json.dumps({**MATCHING, "Operation": "\\u0054eamsTenantSettingChanged"}).replace("\\\\u", "\\u")
    assert json.loads(inner)["Operation"] == "TeamsTenantSettingChanged"
    body = orjson.dumps({"records": [{"properties": {"Timestamp": "t", "RawEventData": inner}}]})
    assert b"TeamsTenantSettingChanged" not in body
    assert pf.body_may_match(body)


@FINDS
def test_escaped_backslash_building_an_escape_one_level_down_is_caught(find):
    pf = prefilter(SEED, find=find)
    # The outer string holds `\u005cu0054` = `\` + `u0054`; the inner JSON reads `\u0054` as T.
    body = (b'{"records": [{"properties": {"RawEventData": "{\\"Operation\\": '
            b'\\"\\u005cu0054eamsTenantSettingChanged\\"}"}}]}')
    raw = orjson.loads(orjson.loads(body)["records"][0]["properties"]["RawEventData"])
    assert raw["Operation"] == "TeamsTenantSettingChanged"
    assert pf.body_may_match(body)


@FINDS
def test_raw_event_data_string_values_are_found_unquoted(find):
    pf = prefilter(SEED, find=find)
    body = orjson.dumps({"records": [{"properties": {"RawEventData": orjson.dumps(MATCHING).decode()}}]})
    assert pf.body_may_match(body)


@FINDS
def test_escaped_slashes(find):
    pf = prefilter("o365.audit.AdminActionDetail:*/configurations/TeamsAppSetupPolicy*", find=find)
    plain = b'{"AdminActionDetail": "PUT /Skype.Policy/configurations/TeamsAppSetupPolicy/x"}'
    assert pf.body_may_match(plain)
    assert pf.body_may_match(plain.replace(b"/", b"\\/"))
    # Only some slashes escaped, and an escaped backslash right before a slash.
    assert pf.body_may_match(b'{"A": "PUT \\/Skype.Policy\\/configurations/TeamsAppSetupPolicy"}')
    assert pf.body_may_match(b'{"A": "x\\\\/configurations\\/TeamsAppSetupPolicy"}')
    # JSON text inside a RawEventData string that escapes its slashes: the outer level writes the
    # inner `\/` as `\\/` (or `\\\/` when it escapes slashes too).
    assert pf.body_may_match(b'{"R": "{\\"A\\": \\"PUT \\\\/configurations\\\\/TeamsAppSetupPolicy\\"}"}')
    assert pf.body_may_match(b'{"R": "{\\"A\\": \\"PUT \\\\\\/configurations\\\\\\/TeamsAppSetupPolicy\\"}"}')
    assert not pf.body_may_match(b'{"AdminActionDetail": "PUT \\/Skype.Policy\\/configurations\\/Other"}')


@FINDS
def test_slash_escapes_do_not_matter_for_literals_without_slashes(find):
    pf = prefilter(SEED, find=find)
    assert not pf.body_may_match(b'[{"ObjectId": "https:\\/\\/contoso.sharepoint.com\\/sites\\/x"}]')


# ---- record level ----

def test_record_level_uses_exact_values_and_leaves_other_types_to_the_predicate():
    pf = prefilter("event.action:TeamsTenantSettingChanged", "event.action:added-group-account-to",
                   "o365.audit.AdminActionDetail:*Policy*")
    names = lambda raw: [r.rule_id for r in pf.rules_for(raw)]  # noqa: E731
    assert names({"Operation": "TeamsTenantSettingChanged"}) == ["0"]
    assert names({"Operation": "TeamCreated"}) == ["1"]
    assert names({"Operation": "added-group-account-to"}) == ["1"]
    assert names({"Operation": "Teamstenantsettingchanged"}) == []  # case-sensitive, like the predicate
    assert names({"Operation": ["TeamsTenantSettingChanged"]}) == ["0", "1"]
    assert names({"Operation": 5}) == ["0", "1"]
    assert names({"Workload": "MicrosoftTeams"}) == []
    assert names({"AdminActionDetail": "PUT /a/Policy/b"}) == ["2"]
    assert names({"AdminActionDetail": "PUT /a/b"}) == []
    assert names({"AdminActionDetail": None}) == ["2"]
    assert pf.record_may_match({"Operation": "TeamCreated"})
    assert not pf.record_may_match({"Operation": "FileAccessed"})


def test_record_requirements_imply_nothing_the_predicate_would_accept_is_dropped():
    """Each condition of the requirement is necessary: a record failing it fails the query."""
    query = ("event.action:(TeamCreated or added-group-account-to) and o365.audit.Name:(x* or *y)")
    pf = prefilter(query)
    predicate = compile_query(query)
    for operation in ("TeamCreated", "added-group-account-to", "MemberAdded", "Other"):
        for name in ("x1", "2y", "xy", "z", 5):
            raw = {"Operation": operation, "Name": name}
            ecs = {"event": {"action": SOURCES["event.action"].renames.get(operation, operation)},
                   "o365": {"audit": {"Name": name}}}
            if predicate(ecs):
                assert pf.rules_for(raw), raw


# ---- the proof: identical results on a varied corpus ----

def _bundled_rules():
    settings = Settings.from_env({})
    return load_rules(settings.rules_dir).rules


def _ascii_escaped(value) -> bytes:
    """JSON where every character of every string is a \\u escape (a legal, if odd, spelling)."""
    if isinstance(value, dict):
        return b"{" + b",".join(_ascii_escaped(k) + b":" + _ascii_escaped(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(_ascii_escaped(v) for v in value) + b"]"
    if isinstance(value, str):
        return b'"' + escape_every_char(value).encode() + b'"'
    return orjson.dumps(value)


def _defender(raw, as_string: bool):
    return {"time": "2026-12-03T16:20:05Z", "operationName": "Publish",
            "category": "AdvancedHunting-CloudAppEvents",
            "properties": {"Timestamp": "2026-12-03T16:20:04.1234567Z",
                           "RawEventData": orjson.dumps(raw).decode() if as_string else raw}}


VARIANTS = {
    "object": lambda raw: orjson.dumps(raw),
    "array": lambda raw: orjson.dumps([{"Id": "filler", "Operation": "FileAccessed"}, raw]),
    "gzip-envelope": lambda raw: gzip.compress(orjson.dumps({"records": [raw]})),
    "defender": lambda raw: orjson.dumps({"records": [_defender(raw, as_string=False)]}),
    "defender-string": lambda raw: orjson.dumps({"records": [_defender(raw, as_string=True)]}),
    "all-escaped": lambda raw: _ascii_escaped([raw]),
    "slashes-escaped": lambda raw: json.dumps({"records": [raw]}).replace("/", "\\/").encode(),
    "slashes-escaped-in-string": lambda raw: orjson.dumps({"records": [
        {"properties": {"RawEventData": json.dumps(raw).replace("/", "\\/")}}]}),
    "escaped-in-string": lambda raw: orjson.dumps(_defender(raw, as_string=True)).replace(
        b"Teams", b"\\\\u0054eams"),
    "ndjson-bad-line": lambda raw: b"\n".join([b'{"broken', orjson.dumps(raw), b"[1"]),
    "gzip-all-escaped": lambda raw: gzip.compress(_ascii_escaped(raw)),
}


def varied_corpus(rules) -> tuple[list[bytes], set[str]]:
    """Every rule's own test records, in every shape and spelling (each copy with its own Id), among a
    generated tenant stream, malformed bodies and records with values of the wrong type.
    Returns the bodies and the record ids that must alert."""
    bodies: list[bytes] = [b.data for b in generate_bodies(1500, seed=5, mean_records=30)]
    must_alert: set[str] = set()
    for rule in rules:
        for test in rule.tests:
            for name, make in VARIANTS.items():
                raw = {**test.record, "Id": f"{test.record['Id']}-{name}"}
                bodies.append(make(raw))
                if test.expect_alert:
                    must_alert.add(raw["Id"])
            if test.expect_alert:  # the same record twice in one batch; and wrong types where rules look
                bodies.append(orjson.dumps(test.record))
                bodies.append(orjson.dumps([test.record]))
                must_alert.add(test.record["Id"])
                for key in ("Operation", "Workload", "Name", "NewValue", "AdminActionDetail",
                            "ModifiedProperties", "Parameters", "ResultStatus"):
                    for value in (None, 7, True, [test.record.get(key)], {"x": test.record.get(key)}):
                        bodies.append(orjson.dumps({**test.record, key: value,
                                                    "Id": f"{test.record['Id']}-{key}-{value!r}"}))
    bodies += [b"", b"{oops", b"\x1f\x8b\x08garbage", b"[1, 2, 3]", b'"text"', b"\xef\xbb\xbf[]",
               b'{"Id": "caf\xe9"}']
    return bodies, must_alert


def _outcome(detection):
    stats = detection.stats.to_dict()
    for parse_dependent in ("bodies_parsed", "bodies_prefiltered", "records", "records_mapped", "skips"):
        stats.pop(parse_dependent)
    return ([a.to_dict() for a in detection.alerts], [a.to_dict() for a in detection.overflow],
            [a.to_dict() for a in detection.excepted], stats)


def test_prefilter_on_and_off_give_identical_results_on_a_varied_corpus():
    rules = _bundled_rules()
    bodies, must_alert = varied_corpus(rules)
    settings = Settings.from_env({})
    off = detect(bodies, rules, settings, prefilter=False)
    on = detect(bodies, rules, settings, prefilter=True)
    assert _outcome(on) == _outcome(off)
    # Not vacuous: every copy of every alerting test record alerted, in every shape and spelling,
    # and the prefilter did skip work.
    assert must_alert <= {a.record_id for a in on.alerts}
    alerting_rules = {r.rule_id for r in rules if any(t.expect_alert for t in r.tests)}
    assert {a.rule_id for a in on.alerts} == alerting_rules
    assert on.stats.bodies_parsed < off.stats.bodies_parsed
    assert on.stats.records_mapped < off.stats.records_mapped
    assert off.stats.skips["invalid_json"] >= len(must_alert) // len(VARIANTS)
    assert on.stats.duplicates > 0


def test_identical_results_with_bytes_find_as_the_search():
    rules = _bundled_rules()
    bodies, _ = varied_corpus(rules)
    settings = Settings.from_env({})
    plain = Prefilter(rules, find=bytes.find)
    simd = Prefilter(rules)
    assert [plain.body_may_match(b) for b in bodies if not b.startswith(b"\x1f")] == \
        [simd.body_may_match(b) for b in bodies if not b.startswith(b"\x1f")]
    assert _outcome(detect(bodies, rules, settings, prefilter=True)) == \
        _outcome(detect(bodies, rules, settings, prefilter=False))


def test_escaped_matching_bodies_are_candidates_for_the_bundled_rules():
    rules = _bundled_rules()
    pf = Prefilter(rules)
    for rule in rules:
        for test in rule.tests:
            if test.expect_alert:
                assert pf.body_may_match(_ascii_escaped([test.record])), rule.name
                assert pf.body_may_match(orjson.dumps([test.record]).replace(b"/", b"\\/")), rule.name
                assert pf.rules_for(test.record) and rule in pf.rules_for(test.record)
