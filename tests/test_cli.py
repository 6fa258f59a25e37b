"""The command line as other tools drive it: names, inputs, outputs and exit codes."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SEED_ID = "bbd1a775-8267-41fa-9232-20e5582596ac"

SEED_RECORD = {
    "CreationTime": "2026-11-30T14:02:11", "Id": "0f4a6e1c-2d7b-4a53-9a1e-6c3d2b8e9f10",
    "Operation": "TeamsTenantSettingChanged", "OrganizationId": "4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f",
    "RecordType": 25, "UserType": 2, "Version": 1, "Workload": "MicrosoftTeams",
    "UserId": "admin@contoso.onmicrosoft.com", "ClientIP": "203.0.113.24",
    "Name": "Allow sideloading and interaction of custom apps", "OldValue": "False", "NewValue": "True",
}
QUIET_RECORD = dict(SEED_RECORD, Id="5a7d0b2e-91c4-4d3f-8e6a-2f1b0c9d8e7a", NewValue="False")


def run(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None):
    return subprocess.run([sys.executable, "-m", "detection", *args], input=stdin, capture_output=True,
                          cwd=ROOT, env=env, timeout=120)


def lines(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_scan_prints_each_alert_once_as_a_json_line(tmp_path):
    body = tmp_path / "batch.json"
    body.write_text(json.dumps([SEED_RECORD, QUIET_RECORD, SEED_RECORD]))
    result = run("scan", str(body), str(body))
    assert result.returncode == 0, result.stderr
    (alert,) = lines(result.stdout)
    for key in ("alert_id", "rule_id", "rule_name", "record_id", "severity", "risk_score", "event_time",
                "user_id", "tenant_id"):
        assert key in alert
    assert alert["rule_id"] == SEED_ID and alert["record_id"] == SEED_RECORD["Id"]
    assert (alert["severity"], alert["risk_score"]) == ("medium", 47)
    assert alert["user_id"] == "admin@contoso.onmicrosoft.com"
    assert alert["tenant_id"] == "4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f"
    assert (alert["old_value"], alert["new_value"]) == ("False", "True")
    assert alert["source_ip"] == "203.0.113.24"


def test_scan_reads_stdin_gzip_and_ndjson(tmp_path):
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_text(json.dumps(QUIET_RECORD) + "\n" + json.dumps(SEED_RECORD) + "\n")
    assert len(lines(run("scan", str(ndjson)).stdout)) == 1
    packed = gzip.compress(json.dumps({"records": [SEED_RECORD]}).encode())
    assert len(lines(run("scan", "-", stdin=packed).stdout)) == 1


def test_scan_reports_skips_on_stderr_and_keeps_going(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(SEED_RECORD))
    bad = tmp_path / "bad.json"
    bad.write_text('{"Id": "x", "Operation": ')
    result = run("scan", str(bad), str(good))
    assert result.returncode == 0
    assert len(lines(result.stdout)) == 1
    assert b"invalid_json" in result.stderr


def test_scan_over_the_bundled_samples_catches_both_tenants():
    result = run("scan", *sorted(str(p) for p in SAMPLES.iterdir() if p.name != "README.md"))
    assert result.returncode == 0, result.stderr
    alerts = [a for a in lines(result.stdout) if a["rule_id"] == SEED_ID]
    assert {a["tenant_id"] for a in alerts} == {"4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f",
                                                "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"}
    assert b"invalid_json" in result.stderr  # the truncated sample body


def test_scan_exits_2_on_a_bad_rules_folder(tmp_path):
    (tmp_path / "broken.toml").write_text("[rule]\nname = 'x'\n")
    result = run("scan", "--rules", str(tmp_path), "-", stdin=b"{}")
    assert result.returncode == 2
    assert b"broken.toml" in result.stderr and b"rule.rule_id is required" in result.stderr


def test_scan_exits_2_on_an_unreadable_path(tmp_path):
    result = run("scan", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and b"missing.json" in result.stderr


def test_normalize_prints_one_ecs_document_per_record_in_order(tmp_path):
    body = tmp_path / "batch.json"
    body.write_text(json.dumps([QUIET_RECORD, SEED_RECORD]))
    docs = lines(run("normalize", str(body)).stdout)
    assert [d["event"]["id"] for d in docs] == [QUIET_RECORD["Id"], SEED_RECORD["Id"]]
    assert docs[0]["event"]["dataset"] == "o365.audit"


def test_match_prints_matching_records_unchanged_and_sets_the_exit_code(tmp_path):
    body = tmp_path / "batch.json"
    body.write_text(json.dumps([QUIET_RECORD, SEED_RECORD]))
    hit = run("match", "o365.audit.NewValue:True", str(body))
    assert hit.returncode == 0 and lines(hit.stdout) == [SEED_RECORD]
    miss = run("match", "o365.audit.NewValue:Maybe", str(body))
    assert miss.returncode == 1 and miss.stdout == b""


def test_match_on_ecs_lines_whatever_the_extension(tmp_path):
    docs = tmp_path / "docs.txt"
    wanted = '{"user":{"id":"a@b"},"event":{"action":"X"}}'
    docs.write_text(wanted + "\n" + '{"user":{"id":"c@d"}}' + "\n")
    result = run("match", "user.id:a@b and event.action:X", "--ecs", str(docs))
    assert result.returncode == 0 and result.stdout.decode().strip() == wanted


def test_match_syntax_error_exits_2_with_line_and_column(tmp_path):
    result = run("match", "user.id:(a or", "-", stdin=b"{}")
    assert result.returncode == 2
    assert b"line 1" in result.stderr and b"column" in result.stderr


def test_rules_list_and_test():
    listing = run("rules", "list", "--json")
    assert listing.returncode == 0
    assert SEED_ID in {r["rule_id"] for r in lines(listing.stdout)}
    tested = run("rules", "test")
    assert tested.returncode == 0, tested.stdout
    assert b" 0 failed" in tested.stdout


def test_rules_test_fails_when_a_record_disagrees(tmp_path):
    seed = (ROOT / "detection/rules/m365_teams_custom_app_interaction_allowed.toml").read_text()
    (tmp_path / "seed.toml").write_text(seed.replace('expect = "no_alert"', 'expect = "alert"', 1))
    result = run("rules", "test", "--rules", str(tmp_path))
    assert result.returncode == 1 and b"FAIL" in result.stdout


def test_a_bad_setting_names_itself():
    result = run("scan", "-", stdin=b"{}", env={"PATH": "/usr/bin:/bin", "MAX_DEPTH": "deep"})
    assert result.returncode == 2 and b"MAX_DEPTH" in result.stderr


@pytest.mark.parametrize("command", ["scan", "normalize", "match", "rules", "settings"])
def test_help_everywhere(command):
    assert run(command, "--help").returncode == 0


def test_scan_prints_an_alert_once_even_when_its_record_recurs_in_a_later_chunk(tmp_path):
    from detection.cli.scan import SCAN_CHUNK

    stream = tmp_path / "stream.jsonl"
    quiet = [json.dumps(dict(QUIET_RECORD, Id=f"quiet-{i}")) for i in range(SCAN_CHUNK + 10)]
    stream.write_text("\n".join([json.dumps(SEED_RECORD), *quiet, json.dumps(SEED_RECORD)]) + "\n")
    result = run("scan", str(stream))
    assert result.returncode == 0, result.stderr
    assert [a["record_id"] for a in lines(result.stdout)] == [SEED_RECORD["Id"]]
    assert b"bodies" in result.stderr and b"1 alerts" in result.stderr


def test_scan_numbers_skipped_bodies_across_chunks(tmp_path):
    from detection.cli.scan import SCAN_CHUNK

    stream = tmp_path / "stream.jsonl"
    stream.write_text("\n".join([json.dumps(QUIET_RECORD)] * (SCAN_CHUNK + 2) + ["[5"]) + "\n")
    result = run("scan", "--no-prefilter", str(stream))
    assert f"skipped body {SCAN_CHUNK + 2}: invalid_json".encode() in result.stderr


def test_match_on_ecs_lines_reports_what_it_cannot_use_by_file_and_line(tmp_path):
    docs = tmp_path / "docs.log"
    wanted = b'{"event":{"action":"X"}}'
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000  # within what JSON parsers take, past MAX_DEPTH
    docs.write_bytes(b"\xef\xbb\xbf" + wanted + b"\n\n[1, 2]\n" + deep + b"\nnot json\n" + wanted + b"\n")
    result = run("match", "event.action:X or free", "--ecs", str(docs))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [wanted, wanted]
    errors = result.stderr.decode()
    assert f"{docs} line 3: not_a_record" in errors
    assert f"{docs} line 4: too_deep" in errors
    assert f"{docs} line 5: invalid_json" in errors
    assert "Traceback" not in errors


def test_a_record_the_mapping_fails_on_costs_only_itself(tmp_path, monkeypatch, capsys):
    """normalize and match map records as the engine does: a mapping failure is a reported skip."""
    import detection.engine
    from detection.cli import main

    real = detection.engine.to_ecs

    def failing_on_quiet(raw, event_time=None):
        if raw.get("Id") == QUIET_RECORD["Id"]:
            raise KeyError("simulated mapping bug")
        return real(raw, event_time)

    monkeypatch.setattr(detection.engine, "to_ecs", failing_on_quiet)
    body = tmp_path / "batch.json"
    body.write_text(json.dumps([QUIET_RECORD, SEED_RECORD]))
    assert main(["normalize", str(body)]) == 0
    out, err = capsys.readouterr()
    assert [d["event"]["id"] for d in lines(out.encode())] == [SEED_RECORD["Id"]]
    assert "skipped body 0: mapping_error: KeyError" in err
    assert main(["match", "event.action:TeamsTenantSettingChanged", str(body)]) == 0
    out, err = capsys.readouterr()
    assert lines(out.encode()) == [SEED_RECORD] and "mapping_error" in err


@pytest.mark.parametrize("command", ["scan", "normalize"])
def test_a_reader_that_stops_early_is_not_an_error(tmp_path, command):
    body = tmp_path / "many.json"
    body.write_text(json.dumps([dict(SEED_RECORD, Id=f"id-{i}") for i in range(3000)]))
    reader = subprocess.Popen([sys.executable, "-m", "detection", command, str(body)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout.read(100)
    reader.stdout.close()  # like `| head -c 100`: far more output is still to come
    stderr = reader.stderr.read()
    assert reader.wait(timeout=120) == 0
    assert b"Broken pipe" not in stderr and b"Traceback" not in stderr


def test_an_unresolved_key_vault_reference_is_named_as_such():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/teams-webhook-url/)"
    result = run("settings", env={"PATH": "/usr/bin:/bin", "TEAMS_WEBHOOK_URL": reference})
    assert result.returncode == 2
    assert b"TEAMS_WEBHOOK_URL: the Key Vault reference was not resolved" in result.stderr


def test_preview_of_a_stored_alert_exits_1_when_storage_is_unreachable():
    from detection.devserver import connection_string, free_port

    env = {"PATH": "/usr/bin:/bin", "ALERTS_STORAGE_CONNECTION": connection_string(free_port())}
    result = run("preview", "0" * 32, env=env)
    assert result.returncode == 1, result.stderr
    assert b"Traceback" not in result.stderr
