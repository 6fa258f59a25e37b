"""The benchmark's generator and its command (figures are not asserted: no timed tests)."""

from __future__ import annotations

import gzip
from collections import Counter

import orjson

from detection.bench import BenchFailure, compare_paths
from detection.cli import main
from detection.engine import Detection, detect
from detection.rules import load_rules
from detection.samplegen import generate_bodies, make_records
from detection.settings import Settings
from detection.sources import Limits, decode_body


def test_the_stream_is_a_pure_function_of_count_and_seed():
    assert generate_bodies(500, seed=3) == generate_bodies(500, seed=3)
    assert generate_bodies(500, seed=3) != generate_bodies(500, seed=4)


def test_the_stream_has_a_tenant_mix_and_every_body_shape():
    records = [raw for _, raw in make_records(20_000, seed=2)]
    workloads = Counter(raw["Workload"] for raw in records)
    assert workloads["Exchange"] > workloads["MicrosoftTeams"] * 4
    assert workloads["SharePoint"] + workloads["OneDrive"] > workloads["MicrosoftTeams"] * 4
    assert workloads["AzureActiveDirectory"] > workloads["MicrosoftTeams"]
    changes = sum(raw["Operation"] == "TeamsTenantSettingChanged" for raw in records)
    assert 5 <= changes <= 50  # about 0.1 %
    bodies = generate_bodies(20_000, seed=2)
    kinds = {body.kind.removeprefix("gzip-") for body in bodies}
    assert kinds == {"array", "ndjson", "records", "defender", "defender-string"}
    assert any(body.kind.startswith("gzip-") for body in bodies)
    assert any(b"\\\\Inbox" in body.data for body in bodies)  # Exchange folder paths
    assert any(b"\\/" in body.data for body in bodies) and any(b"\\u00" in body.data for body in bodies)


def test_every_generated_body_decodes_to_its_records():
    limits = Limits()
    for body in generate_bodies(3000, seed=9):
        decoded = decode_body(body.data, limits)
        assert decoded.skips == [] and len(decoded.records) == body.records
    blob = next(b for b in generate_bodies(3000, seed=9) if b.kind == "gzip-array")
    assert isinstance(orjson.loads(gzip.decompress(blob.data)), list)


def test_the_seed_rule_alerts_in_the_stream():
    settings = Settings.from_env({})
    rules = load_rules(settings.rules_dir).rules
    result = detect([b.data for b in generate_bodies(20_000, seed=1)], rules, settings)
    assert result.alerts and {a.rule_name for a in result.alerts} == {
        "Microsoft 365 Teams Custom Application Interaction Allowed"}


def test_compare_paths_fails_loudly_when_results_differ():
    settings = Settings.from_env({})
    rules = load_rules(settings.rules_dir).rules
    body = [next(b.data for b in generate_bodies(20_000, seed=1)
                 if detect([b.data], rules, settings).alerts)]
    found = detect(body, rules, settings)
    compare_paths(found, detect(body, rules, settings, prefilter=False))
    try:
        compare_paths(found, Detection())
    except BenchFailure as exc:
        assert "changed the alerts" in str(exc)
    else:
        raise AssertionError("a difference went unnoticed")


def test_bench_command_prints_figures_as_its_last_line(capsys):
    assert main(["bench", "--records", "3000", "--repeat", "1", "--batch-records", "1000"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = orjson.loads(lines[-1])
    for key in ("records", "records_per_s", "vs_orjson_parse", "peak_rss_mb", "orjson_records_per_s",
                "prefilter_off_records_per_s", "prefilter_on_records_per_s", "import_ms",
                "health_census_records_per_s", "health_census_vs_orjson_parse", "with_health_records_per_s",
                "with_health_vs_orjson_parse"):
        assert key in figures
    assert figures["with_health_records_per_s"] > 0 and figures["health_census_records_per_s"] > 0
    assert figures["records"] == 3000 and figures["identical_alerts"] is True
    assert figures["peak_rss_mb"] > 0
    # The function app imports outside the Functions host too (no storage configured here).
    assert figures["import_module"] == "function_app" and figures["import_ms"] > 0
    assert any(line.startswith("import function_app: ") and line.endswith("ms (fresh interpreter)")
               for line in lines)
    assert any(line.startswith("orjson.loads of every body") for line in lines)
    assert any(line.startswith("health census of every body") for line in lines)


def test_bench_json_only(capsys):
    assert main(["bench", "--records", "500", "--repeat", "1", "--batch-records", "200", "--json-only"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and orjson.loads(out[0])["records"] == 500
