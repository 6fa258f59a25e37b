"""`send` offline: batch packing against the SDK's own EventDataBatch, and clear usage errors.

Event Hubs itself is out of reach, so the size accounting is left to the real `EventDataBatch`
(created without a connection, as `producer.create_batch()` would hand it out with the hub's limit)
and the tests check what we do with it: order kept, nothing dropped or sent twice, every batch
within the limit, an oversized body named instead of skipped.
"""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest
from azure.eventhub import EventDataBatch

from detection.cli import main
from detection.cli.common import CommandError
from detection.cli.send import fully_qualified, pack

ROOT = Path(__file__).resolve().parent.parent


def batches_of(limit: int):
    return lambda: EventDataBatch(max_size_in_bytes=limit)


def bodies_in(packed) -> list[bytes]:
    return [b"".join(event.body) for event in packed.batch._internal_events]


def test_bodies_fill_batches_in_order_without_loss_or_repeat() -> None:
    bodies = [bytes([65 + i % 26]) * (100 + 37 * i) for i in range(40)]
    packed = list(pack(bodies, batches_of(2048)))
    assert len(packed) > 5
    assert [i for p in packed for i in p.indexes] == list(range(40))
    assert [b for p in packed for b in bodies_in(p)] == bodies
    for p in packed:
        assert p.batch.size_in_bytes <= 2048
        assert len(p.batch) == len(p.indexes)
        assert p.body_bytes == sum(len(bodies[i]) for i in p.indexes)


def test_a_batch_is_closed_only_when_the_next_body_does_not_fit() -> None:
    bodies = [b"x" * 300] * 10
    packed = list(pack(bodies, batches_of(1000)))
    for first, second in itertools.pairwise(packed):
        probe = EventDataBatch(max_size_in_bytes=1000)
        for body in [*bodies_in(first), bodies[second.indexes[0]]]:
            try:
                probe.add(_event(body))
            except ValueError:
                break
        else:
            pytest.fail("a batch was closed although the next body still fitted")


def _event(body: bytes):
    from azure.eventhub import EventData

    return EventData(body)


def test_one_event_per_batch_at_the_limit_and_an_oversized_body_is_named() -> None:
    limit = 1000
    single = EventDataBatch(max_size_in_bytes=limit)
    overhead = 50  # more than the AMQP framing of one small event
    fits = b"a" * (limit - overhead)
    packed = list(pack([fits, fits], batches_of(limit)))
    assert [p.indexes for p in packed] == [[0], [1]]
    with pytest.raises(CommandError, match=r"body 2 \(1000 bytes\) is larger than one event"):
        list(pack([b"{}", fits, b"b" * limit], batches_of(limit)))
    assert single.size_in_bytes == 0


def test_no_bodies_no_batches() -> None:
    assert list(pack([], batches_of(1000))) == []


def test_the_default_batch_limit_is_the_standard_tier_event_size() -> None:
    # What --dry-run packs against; a real hub's create_batch() reports its own (Premium: larger).
    assert EventDataBatch().max_size_in_bytes == 1024 * 1024


@pytest.mark.parametrize(("given", "expected"), [
    ("evhns-m365-abc", "evhns-m365-abc.servicebus.windows.net"),
    ("evhns-m365-abc.servicebus.windows.net", "evhns-m365-abc.servicebus.windows.net"),
    ("sb://evhns-m365-abc.servicebus.windows.net/", "evhns-m365-abc.servicebus.windows.net"),
    ("ns.servicebus.usgovcloudapi.net", "ns.servicebus.usgovcloudapi.net"),
])
def test_namespace_may_be_a_name_or_a_host_name(given: str, expected: str) -> None:
    assert fully_qualified(given) == expected


@pytest.mark.parametrize(("options", "missing"), [
    ([], "--namespace and --hub required"),
    (["--hub", "m365-audit"], "--namespace required"),
    (["--namespace", "evhns-x"], "--hub required"),
    (["--namespace", " ", "--hub", "m365-audit"], "--namespace required"),
])
def test_missing_namespace_or_hub_is_a_usage_error_that_says_where_to_find_them(
        options: list[str], missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["send", str(ROOT / "samples" / "management-activity-general.json"), *options])
    out, err = capsys.readouterr()
    assert code == 2
    assert missing in err
    assert "EVENTHUB_NAMESPACE_FQDN" in err and "EVENTHUB_NAME" in err
    assert out == ""  # nothing was sent, nothing reported as sent


def test_an_unreadable_input_stops_before_any_connection(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    present = tmp_path / "present.json"
    present.write_text("[]")
    # The host name is never looked up: the inputs are checked first.
    code = main(["send", str(present), str(tmp_path / "missing.json"), "--namespace", "ns.invalid",
                 "--hub", "h"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "missing.json: cannot read: no such file" in err
    assert out == ""


def test_dry_run_packs_the_inputs_like_scan_reads_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = tmp_path / "records.jsonl"
    records = (json.dumps({"Id": str(i), "Operation": "FileAccessed"}) for i in range(5))
    lines.write_text("\n".join(records) + "\n")
    whole = tmp_path / "blob.json"
    whole.write_text(json.dumps([{"Id": "x"}]))
    assert main(["send", str(lines), str(whole), "--dry-run"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["bodies"] == 6  # one per line, plus the whole file as one body
    assert summary["batches"] == 1 and summary["sent"] is False
    line_bytes = sum(len(line) for line in lines.read_bytes().splitlines())
    assert summary["bytes"] == line_bytes + whole.stat().st_size


def test_gzip_compresses_each_body_and_an_oversized_body_stops_with_its_number(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.json"
    records = (b'{"Operation":"FileAccessed","Id":"%d"}' % i for i in range(40000))
    big.write_bytes(b"[" + b",".join(records) + b"]")
    assert big.stat().st_size > 1024 * 1024
    assert main(["send", str(big), "--dry-run"]) == 2
    assert "body 0 (" in capsys.readouterr().err
    assert main(["send", str(big), "--dry-run", "--gzip"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["bodies"] == 1 and summary["bytes"] < big.stat().st_size // 5
    assert gzip.decompress(gzip.compress(big.read_bytes(), mtime=0)) == big.read_bytes()
