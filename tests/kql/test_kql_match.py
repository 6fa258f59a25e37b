"""Compiled queries against ECS documents: each construct with documents that match and that do not."""

import pytest

from detection.kql import compile_query, fields, parse
from detection.kql.ast import Field, Match, Value


def matches(query: str, doc: dict) -> bool:
    return compile_query(query)(doc)


# -- exact values -------------------------------------------------------------------------------------


def test_exact_and_case_sensitive():
    doc = {"event": {"action": "FileDownloaded"}}
    assert matches("event.action:FileDownloaded", doc)
    assert matches('event.action:"FileDownloaded"', doc)
    assert not matches("event.action:filedownloaded", doc)
    assert not matches("event.action:FileDownload", doc)  # no prefix matching without a wildcard
    assert not matches("event.action:FileDownloaded2", doc)


def test_multi_valued_field_matches_any_value():
    doc = {"event": {"category": ["web", "authentication"]}}
    assert matches("event.category:web", doc)
    assert matches("event.category:authentication", doc)
    assert not matches("event.category:file", doc)


def test_nested_lists_are_flattened():
    assert matches("f:b", {"f": [["a"], ["b", ["c"]]]})
    assert not matches("f:d", {"f": [["a"], ["b", ["c"]]]})


def test_arrays_of_objects_are_flattened():
    doc = {"o365": {"audit": {"Target": [{"ID": "a", "Type": 0}, {"ID": "b", "Type": 2}]}}}
    assert matches("o365.audit.Target.ID:b", doc)
    assert matches("o365.audit.Target.Type:2", doc)
    # Flattening loses which element a value came from: the conditions hold on different elements.
    assert matches("o365.audit.Target.ID:a and o365.audit.Target.Type:2", doc)
    assert not matches("o365.audit.Target.ID:c", doc)


def test_nested_query_requires_one_element_to_hold_everything():
    doc = {"o365": {"audit": {"Target": [{"ID": "a", "Type": 0}, {"ID": "b", "Type": 2}]}}}
    assert matches("o365.audit.Target:{ ID:a and Type:0 }", doc)
    assert matches("o365.audit.Target:{ ID:b and Type:2 }", doc)
    assert not matches("o365.audit.Target:{ ID:a and Type:2 }", doc)
    assert matches("o365.audit.Target:{ ID:a and not Type:2 }", doc)
    assert not matches("o365.audit.Target:{ ID:c }", doc)


def test_nested_query_on_single_object_and_missing_field():
    assert matches("user:{ name:alice and domain:corp }", {"user": {"name": "alice", "domain": "corp"}})
    assert not matches("user:{ name:alice and domain:corp }", {"user": {"name": "alice"}})
    assert not matches("user:{ not name:bob }", {})  # no element at all: nothing can satisfy it
    assert not matches("user:{ name:alice }", {"user": "alice"})  # a scalar has no inner fields


# -- missing fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", [{}, {"f": None}, {"f": []}, {"g": "x"}, {"f": {}}])
def test_missing_field(doc):
    assert not matches("f:x", doc)
    assert matches("not f:x", doc)
    assert not matches("f:*", doc)
    assert matches("not f:*", doc)


def test_not_on_multi_valued_field_means_no_value_matches():
    assert not matches("not f:x", {"f": ["x", "y"]})
    assert matches("not f:z", {"f": ["x", "y"]})


# -- exists -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "", 0, False, ["a"], [None, "a"], {"sub": 1}, {"a": {"b": False}}])
def test_exists_with_a_value(value):
    assert matches("f:*", {"f": value})


@pytest.mark.parametrize("value", [None, [], [None], [[]], {}, {"sub": None}, {"sub": []}])
def test_exists_without_a_value(value):
    assert not matches("f:*", {"f": value})


def test_exists_in_a_value_list():
    doc = {"o365": {"audit": {"UserId": "alice@example.com"}}}
    query = 'o365.audit.UserId:(* and not "Not Available")'
    assert matches(query, doc)
    assert not matches(query, {"o365": {"audit": {"UserId": "Not Available"}}})
    assert not matches(query, {})


# -- wildcards ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, hit, miss",
    [
        ("f:Power*", "PowerShell", "WindowsPowerShell"),
        ("f:*Shell", "PowerShell", "PowerShell7"),
        ("f:*Power*", "WindowsPowerShell", "powershell"),
        ("f:Pow*ell", "PowerShell", "PowerShel"),
        ("f:P*w*S*l", "PowerShell", "PowerShel1"),
        ("f:ab*ba", "abba", "aba"),  # the prefix and suffix may not overlap
        ("f:a*b*a", "aba", "ab"),
        ("f:*S3 Browser*", "Mozilla S3 Browser 1.0", "S3Browser"),
        ("f:*", "", None),
    ],
)
def test_wildcards(query, hit, miss):
    assert matches(query, {"f": hit})
    if miss is not None:
        assert not matches(query, {"f": miss})


def test_wildcard_spans_newlines():
    assert matches("f:a*b", {"f": "a\nline\nb"})


def test_question_mark_is_literal():
    assert matches("f:a?c", {"f": "a?c"})
    assert not matches("f:a?c", {"f": "abc"})


def test_quoted_and_escaped_stars_are_literal():
    assert matches('f:"a*"', {"f": "a*"})
    assert not matches('f:"a*"', {"f": "abc"})
    assert matches(r"f:a\*", {"f": "a*"})
    assert not matches(r"f:a\*", {"f": "ab"})
    assert matches(r"f:a\**", {"f": "a*b"})
    assert not matches(r"f:a\**", {"f": "ab"})


def test_wildcards_only_match_strings():
    assert not matches("f:1*", {"f": 10})
    assert not matches("f:tr*", {"f": True})


# -- value lists --------------------------------------------------------------------------------------


def test_value_list_or():
    query = "event.provider:(SharePoint or OneDrive)"
    assert matches(query, {"event": {"provider": "OneDrive"}})
    assert not matches(query, {"event": {"provider": "Exchange"}})


def test_value_list_and_on_multi_valued_field():
    query = "event.category:(web and authentication)"
    assert matches(query, {"event": {"category": ["web", "authentication"]}})
    assert not matches(query, {"event": {"category": ["web"]}})


def test_value_list_not():
    query = "f:(* and not (a or b))"
    assert matches(query, {"f": "c"})
    assert not matches(query, {"f": "a"})
    assert not matches(query, {"f": ["c", "b"]})  # one of the values is excluded


def test_value_list_precedence():
    query = "f:(a or b and not c)"  # a or (b and not c)
    assert matches(query, {"f": ["a", "c"]})
    assert matches(query, {"f": "b"})
    assert not matches(query, {"f": ["b", "c"]})


def test_value_list_mixing_wildcards_numbers_and_strings():
    query = 'f:(0 or 2 or "Enabled" or *guest* or true)'
    for value in (0, 2, 2.0, "0", "Enabled", "a guest user", True, "true"):
        assert matches(query, {"f": value}), value
    for value in (1, "1", "enabled", "Guest", False, "2.0", None):
        assert not matches(query, {"f": value}), value


# -- numbers, booleans, null --------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["f:5", "f:5.0", 'f:"5"', "f:+5", "f:5e0"])
def test_json_number_matches_numerically(query):
    assert matches(query, {"f": 5})


@pytest.mark.parametrize("query", ["f:6", "f:5.5", "f:five", "f:5*"])
def test_json_number_mismatch(query):
    assert not matches(query, {"f": 5})


def test_string_holding_a_number_matches_exactly():
    assert matches("f:5", {"f": "5"})
    assert not matches("f:5.0", {"f": "5"})
    assert not matches("f:05", {"f": "5"})


def test_float_document_value():
    assert matches("f:0.5", {"f": 0.5})
    assert matches("f:.5", {"f": 0.5})
    assert not matches("f:0", {"f": 0.5})


def test_large_integers_compare_exactly():
    assert matches("f:9007199254740993", {"f": 9007199254740993})
    assert not matches("f:9007199254740992", {"f": 9007199254740993})


def test_strict_number_syntax():
    assert not matches("f:5_0", {"f": 50})
    assert not matches("f:nan", {"f": float("nan")})


@pytest.mark.parametrize("query", ["f:true", 'f:"true"'])
def test_json_true_matches_lower_case_true(query):
    assert matches(query, {"f": True})
    assert not matches(query, {"f": False})


def test_json_booleans_are_not_numbers_or_capitalised():
    assert not matches("f:True", {"f": True})
    assert not matches("f:(True or False)", {"f": True})
    assert not matches("f:1", {"f": True})
    assert not matches("f:0", {"f": False})
    assert not matches("f:true", {"f": 1})
    assert matches("f:false", {"f": False})
    assert not matches("f:false", {"f": 0})


def test_capitalised_true_is_a_string():
    assert matches("f:True", {"f": "True"})
    assert not matches("f:True", {"f": "true"})
    assert not matches("f:true", {"f": "True"})
    assert matches("f:true", {"f": "true"})


def test_null_is_the_string_null():
    assert matches("f:null", {"f": "null"})
    assert not matches("f:null", {"f": None})
    assert not matches("f:null", {})


# -- ranges -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, hits, misses",
    [
        ("n < 10", [9, 9.5, -1, "9"], [10, 11, "10", True]),
        ("n <= 10", [10, 10.0, "10"], [10.5, 11]),
        ("n > 10", [11, 10.1, "100"], [10, 9, "9", None, {"a": 1}]),
        ("n >= 10", [10, 11, [1, 12]], [9, [1, 2], []]),
        ("n >= 1e3", [1000, 5000], [999]),
    ],
)
def test_numeric_ranges(query, hits, misses):
    for value in hits:
        assert matches(query, {"n": value}), value
    for value in misses:
        assert not matches(query, {"n": value}), value


def test_date_ranges_compare_instants():
    query = '@timestamp >= "2024-03-01T12:00:00Z"'
    assert matches(query, {"@timestamp": "2024-03-01T12:00:00"})  # no zone: UTC
    assert matches(query, {"@timestamp": "2024-03-01T13:30:00.1234567Z"})  # Defender's 7 digits
    assert matches(query, {"@timestamp": "2024-03-01T14:00:00+02:00"})  # = 12:00Z
    assert not matches(query, {"@timestamp": "2024-03-01T13:59:59+02:00"})
    assert not matches(query, {"@timestamp": "2024-02-29"})
    assert matches("@timestamp < 2024-03-02", {"@timestamp": "2024-03-01T23:59:59Z"})


def test_string_ranges_are_lexical():
    assert matches("name >= m", {"name": "mallory"})
    assert matches("name < b", {"name": "alice"})
    assert not matches("name < b", {"name": "bob"})
    assert matches("name < b", {"name": "Zed"})  # "Z" < "b" in code point order, as in Elasticsearch


def test_range_on_missing_field():
    assert not matches("n > 1", {})
    assert matches("not n > 1", {})


# -- escapes ------------------------------------------------------------------------------------------


def test_escaped_specials_match_literally():
    doc = {"f": 'Consent:Set (v1) <x> "q" {y} a\\b'}
    assert matches(r'f:Consent\:Set \(v1\) \<x\> \"q\" \{y\} a\\b', doc)
    assert matches(r'f:"Consent:Set (v1) <x> \"q\" {y} a\\b"', doc)
    assert not matches(r"f:Consent\:Set", doc)


def test_escaped_whitespace_and_unicode():
    assert matches(r"f:a\tb", {"f": "a\tb"})
    assert matches(r'f:"\u0000"', {"f": "\x00"})
    assert not matches(r'f:"\u0000"', {"f": "\\u0000"})


# -- free text ----------------------------------------------------------------------------------------


def test_free_text_matches_any_leaf():
    doc = {"event": {"action": "MailItemsAccessed"}, "o365": {"audit": {"Members": ["Help Desk", "IT"]}}}
    assert matches('"Help Desk"', doc)
    assert matches("MailItemsAccessed", doc)
    assert matches("Mail*", doc)
    assert not matches("mailitemsaccessed", doc)
    assert not matches("Help", doc)
    assert matches("IT and MailItemsAccessed", doc)
    assert not matches("IT and Help", doc)


def test_free_text_and_wildcard_fields_keep_json_types():
    assert not matches("True", {"f": True})
    assert matches("True", {"f": "True"})
    assert not matches("o365.*:True", {"o365": {"x": True}})
    assert matches("o365.*:true", {"o365": {"x": True}})
    assert not matches("o365.*:5", {"o365": {"x": "5.0"}})


def test_free_text_does_not_match_keys():
    assert not matches("action", {"event": {"action": "x"}})


# -- keywords in both cases ---------------------------------------------------------------------------


def test_upper_case_operators_evaluate_like_lower_case():
    doc = {"a": "1", "b": "2"}
    assert matches("a:1 AND NOT b:3", doc)
    assert not matches("a:1 AND NOT b:2", doc)
    assert matches("a:9 OR b:2", doc)
    assert not matches("a:9 Or b:9", doc)


def test_precedence_evaluates_correctly():
    # or < and: a:1 or (b:1 and c:1)
    assert matches("a:1 or b:1 and c:1", {"a": "1"})
    assert not matches("(a:1 or b:1) and c:1", {"a": "1"})
    # not binds tighter than and
    assert matches("not a:1 and b:1", {"b": "1"})
    assert not matches("not (a:1 and b:1)", {"a": "1", "b": "1"})


# -- field names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        {"o365": {"audit": {"Name": "x"}}},
        {"o365.audit.Name": "x"},
        {"o365": {"audit.Name": "x"}},
        {"o365.audit": {"Name": "x"}},
        {"o365": [{"audit": {"Name": "y"}}, {"audit.Name": ["x"]}]},
    ],
)
def test_dotted_field_names_resolve_nested_and_literal_keys(doc):
    assert matches("o365.audit.Name:x", doc)
    assert not matches("o365.audit.Name:z", doc)


def test_literal_and_nested_keys_are_both_read():
    doc = {"a": {"b": "nested"}, "a.b": "literal"}
    assert matches("a.b:nested", doc)
    assert matches("a.b:literal", doc)
    assert matches("a.b:(nested and literal)", doc)


def test_wildcard_field_names():
    doc = {"o365": {"audit": {"Parameters": {"Enabled": "False", "Identity": "rule-1"}}}}
    assert matches("o365.audit.Parameters.*:False", doc)
    assert matches("o365.*.Identity:rule-1", doc)
    assert not matches("o365.audit.Parameters.*:True", doc)
    assert not matches("event.*:False", doc)
    assert matches("o365.audit.*:*", doc)
    assert not matches("user.*:*", doc)
    assert matches("*:rule-1", doc)


def test_quoted_field_name():
    assert matches('"event.action":x', {"event": {"action": "x"}})
    assert not matches('"event.*":x', {"event": {"action": "x"}})


def test_match_all():
    assert matches("", {})
    assert matches("*", {"a": 1})
    assert not matches("not *", {"a": 1})


# -- the seed rule ------------------------------------------------------------------------------------

SEED = (
    "event.dataset:o365.audit and event.provider:MicrosoftTeams and event.category:web and "
    "event.action:TeamsTenantSettingChanged and "
    'o365.audit.Name:"Allow sideloading and interaction of custom apps" and '
    "o365.audit.NewValue:True and event.outcome:success"
)


def seed_doc(**changes) -> dict:
    event = {
        "dataset": "o365.audit",
        "provider": "MicrosoftTeams",
        "category": ["web"],
        "action": "TeamsTenantSettingChanged",
        "outcome": "success",
        "type": ["info", "change"],
    }
    audit = {
        "Name": "Allow sideloading and interaction of custom apps",
        "NewValue": "True",
        "OldValue": "False",
    }
    for key, value in changes.items():
        (event if key in event else audit)[key] = value
    return {"event": event, "o365": {"audit": audit}, "data_stream": {"dataset": "o365.audit"}}


def test_seed_query_matches_its_record():
    assert compile_query(SEED)(seed_doc())


@pytest.mark.parametrize(
    "changes",
    [
        {"NewValue": "true"},
        {"NewValue": "False"},
        {"NewValue": True},  # a JSON boolean is not the string "True"
        {"outcome": "failure"},
        {"category": ["authentication"]},
        {"provider": "microsoftteams"},
        {"action": "TeamsAdminAction"},
        {"Name": "Allow sideloading and interaction of custom apps "},
        {"Name": "allow sideloading and interaction of custom apps"},
        {"dataset": "o365.audit.other"},
    ],
)
def test_seed_query_near_misses(changes):
    assert not compile_query(SEED)(seed_doc(**changes))


def test_seed_query_with_missing_field():
    doc = seed_doc()
    del doc["o365"]["audit"]["NewValue"]
    assert not compile_query(SEED)(doc)


def test_current_elastic_seed_variant_uses_data_stream_dataset():
    query = SEED.replace("event.dataset:", "data_stream.dataset:", 1)
    assert compile_query(query)(seed_doc())
    doc = seed_doc()
    doc["data_stream"]["dataset"] = "o365.other"
    assert not compile_query(query)(doc)


# -- api ----------------------------------------------------------------------------------------------


def test_compile_from_a_parsed_tree():
    node = parse("a:1 and b:*")
    predicate = compile_query(node)
    assert predicate({"a": 1, "b": "x"})
    assert not predicate({"a": 1})


def test_compile_hand_built_node():
    assert compile_query(Match(Field("a"), Value("x")))({"a": "x"})


def test_compile_rejects_non_nodes():
    with pytest.raises(TypeError):
        compile_query(42)  # type: ignore[arg-type]


def test_fields_lists_what_the_query_reads():
    assert fields(SEED) == {
        "event.dataset",
        "event.provider",
        "event.category",
        "event.action",
        "o365.audit.Name",
        "o365.audit.NewValue",
        "event.outcome",
    }
    query = "not a:1 or (b:* and c >= 2) or t:{ x:1 and not y:2 } or o365.audit.*:z or freetext"
    assert fields(parse(query)) == {"a", "b", "c", "t.x", "t.y", "o365.audit.*"}
    assert fields("") == set()
