"""Every card the tests build, checked by Microsoft's Adaptive Cards SDK (cardcheck.js under node), and
the checker itself shown to catch what it must."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from detection.notify.base import AlertMessage
from detection.notify.cardcheck import CARDCHECK_JS, check_cards
from detection.notify.teams import teams_payload
from tests.notify.notify_samples import INJECTIONS, all_messages, injected_alert

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

MESSAGES = list(all_messages())


def test_every_card_we_build_parses_and_validates_without_a_warning():
    envelopes = [teams_payload(message) for _, message in MESSAGES]
    result = check_cards(envelopes)
    assert result.failures == (), "\n".join(result.failures)
    assert result.ok
    assert len([line for line in result.lines if line.startswith("ok ")]) == len(envelopes)


def card(*body: dict, **extra: object) -> dict:
    return {"type": "AdaptiveCard", "version": "1.4", "body": list(body), **extra}


TEXT_RUN = {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": "x"}]}


@pytest.mark.parametrize(("name", "bad", "expected"), [
    ("misspelt property", card({"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": "x",
                                                                       "wieght": "Bolder"}]}),
     'TextRun: unknown property "wieght"'),
    ("invalid value", card({"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": "x",
                                                                   "color": "purple"}]}),
     'Invalid value "purple" for property "color"'),
    ("element newer than 1.4", card({"type": "Table", "columns": [], "rows": []}),
     'Unknown element type "Table"'),
    ("other card version", {**card(TEXT_RUN), "version": "1.5"}, 'version is "1.5", not "1.4"'),
    ("action without url", card(TEXT_RUN, actions=[{"type": "Action.OpenUrl", "title": "t"}]),
     'Property "url" must be set'),
    ("retired connector card", {"@type": "MessageCard", "@context": "http://schema.org/extensions",
                                "summary": "x", "sections": []}, 'type is undefined, not "AdaptiveCard"'),
    ("envelope with a content url", {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": "https://x",
        "content": card(TEXT_RUN)}]},
     "attachment contentUrl must be null"),
    ("envelope of another type", {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.hero", "contentUrl": None,
        "content": card(TEXT_RUN)}]},
     "attachment contentType is not application/vnd.microsoft.card.adaptive"),
    ("message too big", {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
        "content": card({"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": "x" * 30_000}]})}]},
     "more than 28000"),
])
def test_the_checker_fails_on_what_teams_would_reject_or_drop(name, bad, expected):
    result = check_cards([card(TEXT_RUN), bad])
    assert not result.ok
    assert result.lines[0].startswith("ok ") and result.lines[0].endswith("[0]")
    assert any(expected in line for line in result.failures), result.lines


def test_the_checker_reads_stdin_and_reports_unusable_input():
    node = shutil.which("node")
    done = subprocess.run([node, str(CARDCHECK_JS)], input='{"type": "AdaptiveCard", "version": "1.4", '
                          '"body": []}', capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "ok stdin\n")
    done = subprocess.run([node, str(CARDCHECK_JS)], input="{not json", capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "not JSON" in done.stderr


def test_rendered_html_shows_hostile_values_as_text(tmp_path: Path):
    envelopes = [teams_payload(AlertMessage(injected_alert(p))) for p in INJECTIONS]
    out = tmp_path / "cards.html"
    result = check_cards(envelopes, html=out, before_html="<h1>before</h1>", after_html="<p>after</p>")
    assert result.ok, result.lines
    page = out.read_text(encoding="utf-8")
    assert page.index("<h1>before</h1>") < page.index('class="card-preview"') < page.index("<p>after</p>")
    assert page.count('class="card-preview"') == len(INJECTIONS)
    assert "&lt;!channel&gt;" in page and "<!channel>" not in page
    assert "&lt;at&gt;Global Admin&lt;/at&gt;" in page
    assert "[verify your account](https://evil.example/login)" in page
    assert "**urgent** _now_" in page and "<strong>" not in page and "<em>" not in page
    hrefs = set(re.findall(r'href="([^"]+)"', page))
    assert hrefs == {"https://purview.microsoft.com/audit/auditsearch",
                     "https://admin.teams.microsoft.com/policies/manage-apps",
                     "https://attack.mitre.org/tactics/TA0003/"}
    assert "<script" not in page
