"""`make demo` as a person runs it: the sample stream, Azurite started and stopped, console or webhooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def demo(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.endswith("_WEBHOOK_URL") and k not in ("WEBHOOK_URL", "ALERTS_STORAGE_CONNECTION")}
    return subprocess.run([sys.executable, "-m", "detection", "demo"], capture_output=True, text=True,
                          cwd=ROOT, env={**clean, **env}, timeout=180)


def test_without_webhooks_the_console_shows_what_would_be_sent():
    result = demo()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Azurite in memory" in out
    assert "this is what would be sent" in out
    assert "Microsoft 365 Teams Custom Application Interaction Allowed" in out
    first = next(line for line in out.splitlines() if line.startswith("First pass:"))
    again = next(line for line in out.splitlines() if line.startswith("Replayed:"))
    assert "1 invalid_json" in first and " 0 new alerts" not in first
    assert " 0 new alerts" in again and "0 notifications sent" in again
    assert "suppressed" in out  # the second enablement by the same admin is grouped


def test_with_webhooks_set_the_sample_alerts_are_posted_to_them():
    with HTTPServer(host="127.0.0.1", port=0) as server:
        server.expect_request("/teams", method="POST").respond_with_data("", status=202)
        server.expect_request("/slack", method="POST").respond_with_data("ok", status=200)
        result = demo(TEAMS_WEBHOOK_URL=server.url_for("/teams"), SLACK_WEBHOOK_URL=server.url_for("/slack"))
        assert result.returncode == 0, result.stderr
        posts = [(request.path, json.loads(request.data)) for request, _ in server.log]
    teams = [body for path, body in posts if path == "/teams"]
    slack = [body for path, body in posts if path == "/slack"]
    assert teams and len(teams) == len(slack)  # each alert once per destination, replay sends nothing more
    assert all(b["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive" for b in teams)
    assert any("Custom Application Interaction Allowed" in b["text"] for b in slack)
    assert "this is what would be sent" not in result.stdout
    assert server.url_for("/teams") not in result.stdout + result.stderr  # URLs are secrets
