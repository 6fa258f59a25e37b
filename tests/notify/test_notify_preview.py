"""`python -m detection preview`: the sample alert and a stored alert, rendered into one HTML page."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detection.cli import main
from detection.settings import Settings
from tests.notify.notify_samples import make_alert

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]


def test_preview_sample_writes_a_page_with_the_card_slack_and_console(tmp_path: Path, capsys):
    out = tmp_path / "preview.html"
    assert main(["preview", "--sample", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page.index("<h1>Alert preview</h1>") < page.index('class="card-preview"') < page.index("<h2>Slack")
    # The seed rule's first record that must alert, with the rule's own guide.
    assert "Microsoft 365 Teams Custom Application Interaction Allowed" in page
    assert "admin@contoso.onmicrosoft.com" in page and "203.0.113.24" in page
    assert "If unplanned, turn custom app interaction off again in the Teams admin center." in page
    assert 'href="https://purview.microsoft.com/audit/auditsearch"' in page
    assert "&quot;blocks&quot;" in page  # the Slack payload, escaped into a <pre>
    assert "no webhook configured" in page
    assert "<script" not in page


def test_preview_needs_an_alert_id_or_sample(capsys):
    with pytest.raises(SystemExit):
        main(["preview"])
    assert "ALERT_ID" in capsys.readouterr().err


def test_preview_of_a_stored_alert(tmp_path: Path, monkeypatch, state_settings_env, capsys):
    from detection.state.store import AlertStore

    for name, value in state_settings_env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(state_settings_env)
    store = AlertStore.open(settings)
    alert = make_alert(user_id="stored.user@contoso.com", alert_id="5a1e7d0c9b8a7f6e5d4c3b2a19080706")
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    entity = store.alert_entity(alert, status="new", when=now, now=now)
    store.create({**entity, "role": "head", "suppressed_count": 3})  # as the head of its window
    out = tmp_path / "stored.html"
    assert main(["preview", alert.alert_id, "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "stored.user@contoso.com" in page and alert.alert_id in page
    assert "3 similar alerts since the last notice" in page  # what its notification reported
    assert main(["preview", "0" * 32, "--out", str(tmp_path / "none.html")]) == 2
    assert "no alert with id" in capsys.readouterr().err
