"""Body shapes → records, and every way a body can fail (each a counted skip with its reason)."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from detection.settings import Settings
from detection.sources import (
    BodyError,
    Limits,
    SourceRecord,
    decode_body,
    decode_json,
    decompress,
    looks_complete,
)

LIMITS = Limits()


def record(n: int = 1, **extra: object) -> dict:
    base = {"CreationTime": "2026-11-30T14:02:11", "Id": f"id-{n}", "Operation": "FileAccessed",
            "RecordType": 6, "Workload": "SharePoint", "UserId": f"user{n}@contoso.example"}
    base.update(extra)
    return base


def defender_item(raw: object, stamp: str = "2026-11-30T14:02:11.1234567Z") -> dict:
    return {"time": "2026-11-30T14:02:12.0000000Z", "tenantId": "t", "operationName": "Publish",
            "category": "AdvancedHunting-CloudAppEvents",
            "properties": {"Timestamp": stamp, "ActionType": "FileAccessed", "RawEventData": raw}}


def ids(decoded) -> list[str]:
    return [r.raw["Id"] for r in decoded.records]


def reasons(decoded) -> list[str]:
    return [s.reason for s in decoded.skips]


# ---- shapes ----

def test_single_record_object():
    decoded = decode_body(orjson.dumps(record(1)), LIMITS)
    assert decoded.records == [SourceRecord(record(1), None)]
    assert decoded.skips == []


def test_json_array_content_blob():
    decoded = decode_body(orjson.dumps([record(1), record(2), record(3)]), LIMITS)
    assert ids(decoded) == ["id-1", "id-2", "id-3"]


def test_ndjson_with_crlf_and_blank_lines():
    body = b"\r\n".join(orjson.dumps(record(i)) for i in range(3)) + b"\r\n\r\n"
    decoded = decode_body(body, LIMITS)
    assert ids(decoded) == ["id-0", "id-1", "id-2"]
    assert decoded.skips == []


def test_records_envelope():
    decoded = decode_body(orjson.dumps({"records": [record(1), record(2)]}), LIMITS)
    assert ids(decoded) == ["id-1", "id-2"]
    assert all(r.event_time is None for r in decoded.records)


def test_defender_envelope_uses_properties_timestamp():
    body = orjson.dumps({"records": [defender_item(record(7))]})
    decoded = decode_body(body, LIMITS)
    assert decoded.records == [SourceRecord(record(7), "2026-11-30T14:02:11.1234567Z")]


def test_defender_raw_event_data_as_json_string():
    raw = record(8, ParentFolder={"Path": "\\Inbox\\u-reports"})
    body = orjson.dumps({"records": [defender_item(orjson.dumps(raw).decode())]})
    decoded = decode_body(body, LIMITS)
    assert decoded.records == [SourceRecord(raw, "2026-11-30T14:02:11.1234567Z")]


def test_defender_item_without_envelope_and_non_string_timestamp():
    item = defender_item(record(9))
    item["properties"]["Timestamp"] = 12345
    decoded = decode_body(orjson.dumps(item), LIMITS)
    assert decoded.records == [SourceRecord(record(9), None)]


def test_object_with_records_key_that_is_itself_a_record_stays_a_record():
    raw = record(1, records=[1, 2])
    assert decode_body(orjson.dumps(raw), LIMITS).records == [SourceRecord(raw)]


@pytest.mark.parametrize("shape", ["object", "array", "ndjson", "envelope", "defender"])
def test_gzip_of_every_shape(shape):
    r1, r2 = record(1), record(2)
    body = {
        "object": orjson.dumps(r1),
        "array": orjson.dumps([r1, r2]),
        "ndjson": orjson.dumps(r1) + b"\n" + orjson.dumps(r2),
        "envelope": orjson.dumps({"records": [r1, r2]}),
        "defender": orjson.dumps({"records": [defender_item(r1), defender_item(r2)]}),
    }[shape]
    plain = decode_body(body, LIMITS)
    zipped = decode_body(gzip.compress(body), LIMITS)
    assert zipped == plain
    assert ids(zipped) == (["id-1"] if shape == "object" else ["id-1", "id-2"])


def test_bom_and_surrounding_whitespace():
    body = b"\xef\xbb\xbf \n\t" + orjson.dumps([record(1)]) + b" \r\n"
    assert ids(decode_body(body, LIMITS)) == ["id-1"]


def test_bom_ndjson():
    body = b"\xef\xbb\xbf" + orjson.dumps(record(1)) + b"\n" + orjson.dumps(record(2))
    assert ids(decode_body(body, LIMITS)) == ["id-1", "id-2"]


def test_multi_member_gzip_is_joined():
    body = gzip.compress(b'[{"Id": "a"},') + gzip.compress(b'{"Id": "b"}]')
    assert [r.raw["Id"] for r in decode_body(body, LIMITS).records] == ["a", "b"]


def test_wrong_value_types_inside_a_record_are_kept_for_the_mapper():
    raw = {"Id": 5, "Operation": ["x"], "CreationTime": None, "Workload": {"a": 1}}
    assert decode_body(orjson.dumps(raw), LIMITS).records == [SourceRecord(raw)]


# ---- skips ----

@pytest.mark.parametrize("body, reason", [
    (b"", "empty"),
    (b"  \r\n\t ", "empty"),
    (b"\xef\xbb\xbf", "empty"),
    (b"[]", "empty"),
    (b'{"records": []}', "empty"),
    (b'[{"Id": "a", "Operation": "x"', "invalid_json"),
    (b"not json at all", "invalid_json"),
    (b'{"Id": "a"} {"Id": "b"}', "invalid_json"),
    (b'{"Id": "caf\xe9"}', "invalid_utf8"),
    (b"42", "not_a_record"),
    (b'"a string"', "not_a_record"),
    (b"null", "not_a_record"),
    (b'{"foo": 1, "bar": 2}', "not_a_record"),
    (b"\x1f\x8bnot really gzip", "invalid_gzip"),
])
def test_skip_reasons(body, reason):
    decoded = decode_body(body, LIMITS, index=4)
    assert decoded.records == []
    assert reasons(decoded) == [reason]
    assert decoded.skips[0].body_index == 4
    assert decoded.skips[0].detail


@pytest.mark.parametrize("value, kind", [(5, "number"), ({"Id": "a"}, "object"), (None, "null")])
def test_an_envelope_whose_records_are_not_an_array_says_so(value, kind):
    (skip,) = decode_body(orjson.dumps({"records": value}), LIMITS).skips
    assert skip.reason == "not_a_record"
    assert skip.detail == f"records is a JSON {kind}, not an array of records"


def test_truncated_gzip_is_invalid_gzip():
    body = gzip.compress(orjson.dumps([record(1)] * 50))
    decoded = decode_body(body[: len(body) // 2], LIMITS)
    assert reasons(decoded) == ["invalid_gzip"]


def test_trailing_garbage_after_gzip_is_invalid_gzip():
    decoded = decode_body(gzip.compress(b"[]") + b"garbage", LIMITS)
    assert reasons(decoded) == ["invalid_gzip"]


def test_array_items_that_are_not_records_skip_alone():
    body = orjson.dumps([record(1), 5, "x", None, [record(2)], {"nope": 1}, record(3)])
    decoded = decode_body(body, LIMITS)
    assert ids(decoded) == ["id-1", "id-3"]
    assert reasons(decoded) == ["not_a_record"] * 5
    assert "item 1" in decoded.skips[0].detail


def test_defender_items_with_bad_raw_event_data():
    items = [defender_item("{not json"), defender_item(17), defender_item({"x": 1}),
             defender_item(orjson.dumps([1]).decode()), defender_item(record(4))]
    decoded = decode_body(orjson.dumps({"records": items}), LIMITS)
    assert ids(decoded) == ["id-4"]
    assert reasons(decoded) == ["invalid_json", "not_a_record", "not_a_record", "not_a_record"]


def test_ndjson_bad_lines_skip_alone():
    lines = [orjson.dumps(record(1)), b'{"Id": "broken', b'{"Id": "caf\xe9"}', b"7", orjson.dumps(record(2))]
    decoded = decode_body(b"\n".join(lines), LIMITS)
    assert ids(decoded) == ["id-1", "id-2"]
    assert reasons(decoded) == ["invalid_json", "invalid_utf8", "not_a_record"]
    assert decoded.skips[0].detail.startswith("line 2:")


def test_pretty_printed_broken_json_is_one_skip_not_one_per_line():
    body = orjson.dumps([record(1), record(2)], option=orjson.OPT_INDENT_2)[:-10]
    decoded = decode_body(body, LIMITS)
    assert reasons(decoded) == ["invalid_json"]


def test_pretty_printed_valid_json_is_one_document():
    body = orjson.dumps({"records": [record(1), record(2)]}, option=orjson.OPT_INDENT_2)
    assert ids(decode_body(body, LIMITS)) == ["id-1", "id-2"]


# ---- limits ----

def test_limits_from_settings():
    settings = Settings.from_env({"MAX_BODY_BYTES": "1000", "MAX_DEPTH": "7", "MAX_RECORDS_PER_BODY": "3"})
    assert Limits.from_settings(settings) == Limits(1000, 7, 3)


def test_too_large_plain_body():
    body = orjson.dumps([record(i) for i in range(20)])
    limits = Limits(max_body_bytes=len(body) - 1)
    assert reasons(decode_body(body, limits)) == ["too_large"]
    assert len(decode_body(body, Limits(max_body_bytes=len(body))).records) == 20


def test_gzip_bomb_is_too_large_without_inflating_it_all():
    bomb = gzip.compress(b" " * (50 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    with pytest.raises(BodyError) as caught:
        decompress(bomb, Limits(max_body_bytes=1024 * 1024))
    assert caught.value.reason == "too_large"


def test_decompress_leaves_plain_bodies_alone_and_inflates_up_to_the_limit():
    data = b"[" + b" " * 998 + b"]"
    assert decompress(data, LIMITS) is data
    assert decompress(gzip.compress(data), Limits(max_body_bytes=1000)) == data
    with pytest.raises(BodyError):
        decompress(gzip.compress(data), Limits(max_body_bytes=999))


def test_raw_deflate_is_not_gzip():
    # zlib-wrapped data does not start with the gzip magic: it is read as (invalid) JSON.
    assert reasons(decode_body(zlib.compress(b"[]"), LIMITS)) in (["invalid_json"], ["invalid_utf8"])


def nested(depth: int) -> dict:
    """A record whose `Deep` value nests `depth` containers (the record itself is one more)."""
    value: object = "leaf"
    for _ in range(depth):
        value = {"x": value}
    return record(1, Deep=value)


def test_depth_limit_counts_the_record_and_its_wrappers():
    limits = Limits(max_depth=10)
    assert len(decode_body(orjson.dumps(nested(9)), limits).records) == 1  # record + 9 = 10
    assert reasons(decode_body(orjson.dumps(nested(10)), limits)) == ["too_deep"]
    # In an array the record sits one level lower.
    assert reasons(decode_body(orjson.dumps([nested(9)]), limits)) == ["too_deep"]
    assert len(decode_body(orjson.dumps([nested(8)]), limits).records) == 1


def test_depth_inside_lists_counts_too():
    raw = record(1, Deep=[[[["x"]]]])  # record + 4 lists = 5
    assert len(decode_body(orjson.dumps(raw), Limits(max_depth=5)).records) == 1
    assert reasons(decode_body(orjson.dumps(raw), Limits(max_depth=4))) == ["too_deep"]


def test_deep_record_skips_alone():
    body = orjson.dumps([record(2), nested(70), record(3)])
    decoded = decode_body(body, LIMITS)
    assert ids(decoded) == ["id-2", "id-3"]
    assert reasons(decoded) == ["too_deep"]


def test_beyond_orjson_nesting_limit_is_too_deep():
    body = b'{"Id": "a", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    assert reasons(decode_body(body, LIMITS)) == ["too_deep"]


def test_too_many_records_keeps_the_first_and_counts_the_rest():
    limits = Limits(max_records_per_body=3)
    decoded = decode_body(orjson.dumps([record(i) for i in range(10)]), limits)
    assert ids(decoded) == ["id-0", "id-1", "id-2"]
    assert reasons(decoded) == ["too_many_records"]
    assert decoded.skips[0].count == 7


def test_too_many_records_in_ndjson():
    limits = Limits(max_records_per_body=2)
    body = b"\n".join(orjson.dumps(record(i)) for i in range(5))
    decoded = decode_body(body, limits)
    assert ids(decoded) == ["id-0", "id-1"]
    assert [(s.reason, s.count) for s in decoded.skips] == [("too_many_records", 3)]


def test_too_many_records_in_envelope():
    decoded = decode_body(orjson.dumps({"records": [record(i) for i in range(4)]}),
                          Limits(max_records_per_body=1))
    assert ids(decoded) == ["id-0"]
    assert decoded.skips[0].count == 3


# ---- the keep filter (used by the engine's record-level prefilter) ----

def test_keep_sets_records_aside_but_counts_them():
    body = orjson.dumps([record(1), record(2), record(3)])
    decoded = decode_json(body, LIMITS, keep=lambda raw: raw["Id"] == "id-2")
    assert ids(decoded) == ["id-2"]
    assert decoded.filtered == 2
    assert decoded.total == 3


def test_a_malformed_body_does_not_stop_the_others():
    bodies = [orjson.dumps([record(1)]), b"{oops", gzip.compress(b"[1,")[:-3], orjson.dumps(record(2))]
    results = [decode_body(b, LIMITS, i) for i, b in enumerate(bodies)]
    assert [ids(r) for r in results] == [["id-1"], [], [], ["id-2"]]
    assert [(s.reason, s.body_index) for r in results for s in r.skips] == [
        ("invalid_json", 1), ("invalid_gzip", 2)]


@pytest.mark.parametrize("body, complete", [
    (b'[{"Id": "a"}]', True),
    (b'\xef\xbb\xbf  {"Id": "a"}\r\n', True),
    (b'{"Id": "a"}\n{"Id": "b"}\n', True),
    (b'{"records": [{"Id": "a"}]}', True),
    (b'[{"Id": "a"}, {"Id": "b"}', False),  # cut after a record
    (b'{"records": [{"Id": "a"}]', False),
    (b'{"Id": "a", "Operation": ', False),
    (b'{"Id": "a"}\n{"Id": "b', False),
    (b"", False),
    (b"   \n", False),
    (b"42", False),
    (b"[" + b" " * 100 + b"]", True),
    (b" " * 100 + b"[]", False),  # more padding than it looks at: parsed, which is always safe
])
def test_looks_complete(body, complete):
    assert looks_complete(body) is complete
