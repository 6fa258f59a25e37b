"""The Teams card and the Slack message: exact shapes, limits, and hostile values shown as inert text."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson
import pytest

from detection.notify.base import AlertMessage, DeliveryFailedMessage, HealthMessage, OverflowMessage
from detection.notify.content import PURVIEW_AUDIT_SEARCH, TEAMS_ADMIN_APPS, content_for
from detection.notify.slack import slack_payload
from detection.notify.teams import MAX_MESSAGE_BYTES, teams_payload
from detection.notify.text import TRUNCATION_MARKER, clean, slack_escape
from detection.notify.webhook import body_bytes
from tests.notify.notify_samples import (
    INJECTIONS,
    all_messages,
    huge_alert,
    injected_alert,
    make_alert,
    overflow_message,
)

MESSAGES = list(all_messages())
IDS = [name for name, _ in MESSAGES]


def walk(node: Any, parent: dict[str, Any] | None = None):
    """Every (string, the dict holding it, key) in a JSON value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield value, node, key
            else:
                yield from walk(value, node)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, parent)


def card_of(envelope: dict[str, Any]) -> dict[str, Any]:
    return envelope["attachments"][0]["content"]


def text_runs(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [holder for _, holder, key in walk(card) if key == "text" and holder.get("type") == "TextRun"]


def fact_rows(card: dict[str, Any]) -> dict[str, str]:
    rows = {}
    for element in card["body"]:
        if element["type"] == "ColumnSet":
            label, value = (col["items"][0]["inlines"][0]["text"] for col in element["columns"])
            rows[label] = value
    return rows


# ---- Teams ----

def test_teams_envelope_is_the_workflows_shape_with_one_adaptive_card_1_4():
    envelope = teams_payload(AlertMessage(make_alert()))
    assert set(envelope) == {"type", "attachments"}
    assert envelope["type"] == "message"
    assert len(envelope["attachments"]) == 1
    attachment = envelope["attachments"][0]
    assert attachment == {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                          "content": attachment["content"]}
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    assert "@type" not in card and "sections" not in card  # not the retired MessageCard


def test_teams_card_carries_what_an_analyst_needs():
    card = card_of(teams_payload(AlertMessage(make_alert(), suppressed_count=3)))
    title = card["body"][0]["items"][0]["inlines"][0]
    assert title["text"] == "Microsoft 365 Teams Custom Application Interaction Allowed"
    assert title["color"] == "warning" and card["body"][0]["style"] == "warning"
    facts = fact_rows(card)
    assert facts["Changed by"] == "admin@contoso.onmicrosoft.com"
    assert facts["Tenant"] == "4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f"
    assert facts["Source IP"] == "203.0.113.24"
    assert facts["Event time"] == "2026-11-30T14:02:11.000Z"
    assert facts["Change"] == "False → True"
    assert facts["Setting"] == "Allow sideloading and interaction of custom apps"
    assert facts["Record id"] == "0f4a6e1c-2d7b-4a53-9a1e-6c3d2b8e9f10"
    assert facts["MITRE ATT&CK"] == "Persistence (TA0003)"
    assert facts["Suppressed"] == "3 similar alerts since the last notice"
    texts = [run["text"] for run in text_runs(card)]
    assert "Investigate" in texts and "Respond" in texts
    assert any(t.startswith("1. ") for t in texts)
    urls = {a["title"]: a["url"] for a in card["actions"]}
    assert all(a["type"] == "Action.OpenUrl" for a in card["actions"])
    assert PURVIEW_AUDIT_SEARCH in urls.values() and TEAMS_ADMIN_APPS in urls.values()
    assert urls["MITRE ATT&CK TA0003"] == "https://attack.mitre.org/tactics/TA0003/"


def test_teams_suppressed_fact_only_when_something_was_suppressed():
    assert "Suppressed" not in fact_rows(card_of(teams_payload(AlertMessage(make_alert()))))


@pytest.mark.parametrize(("severity", "colour"), [("low", "accent"), ("medium", "warning"),
                                                  ("high", "attention"), ("critical", "attention"),
                                                  ("unknown", "default")])
def test_teams_title_is_coloured_by_severity(severity, colour):
    card = card_of(teams_payload(AlertMessage(make_alert(severity=severity))))
    assert card["body"][0]["items"][0]["inlines"][0]["color"] == colour


@pytest.mark.parametrize(("name", "message"), MESSAGES, ids=IDS)
def test_teams_puts_every_text_in_a_text_run_which_has_no_markdown(name, message):
    card = card_of(teams_payload(message))
    elements = {holder.get("type") for _, holder, _ in walk(card)}
    assert "TextBlock" not in elements and "FactSet" not in elements
    for _, holder, key in walk(card):
        if key == "text":
            assert holder["type"] == "TextRun", holder


@pytest.mark.parametrize("payload", INJECTIONS)
def test_teams_shows_hostile_values_verbatim_as_plain_text(payload):
    card = card_of(teams_payload(AlertMessage(injected_alert(payload))))
    shown = clean(payload)
    facts = fact_rows(card)
    assert facts["Changed by"] == shown
    assert facts["Source IP"] == shown
    assert facts["Change"] == f"{shown} → {shown}"
    assert card["body"][0]["items"][0]["inlines"][0]["text"] == f"Rule {shown}"
    # The only links are our buttons; no value became an action, a mention entity or a URL.
    assert {a["url"] for a in card["actions"]} <= {PURVIEW_AUDIT_SEARCH, TEAMS_ADMIN_APPS,
                                                  "https://attack.mitre.org/tactics/TA0003/"}
    assert "entities" not in orjson.dumps(card).decode()
    assert all("selectAction" not in run for run in text_runs(card))


def test_teams_values_lose_control_and_direction_characters():
    card = card_of(teams_payload(AlertMessage(make_alert(user_id="a\x1b[31mb\r\nc\u202ed"))))
    assert fact_rows(card)["Changed by"] == "a [31mb c\ufffdd"


@pytest.mark.parametrize(("name", "message"), MESSAGES, ids=IDS)
def test_teams_message_fits_in_28_kb(name, message):
    assert len(orjson.dumps(teams_payload(message))) <= MAX_MESSAGE_BYTES


def test_teams_huge_values_are_cut_with_a_marker():
    envelope = teams_payload(AlertMessage(huge_alert()))
    assert len(orjson.dumps(envelope)) <= MAX_MESSAGE_BYTES
    facts = fact_rows(card_of(envelope))
    assert facts["Changed by"].endswith(TRUNCATION_MARKER)
    assert facts["Change"].startswith("é") and TRUNCATION_MARKER in facts["Change"]


def test_teams_small_cards_keep_long_values_whole_up_to_the_first_limit():
    value = "x" * 900
    facts = fact_rows(card_of(teams_payload(AlertMessage(make_alert(user_id=value)))))
    assert facts["Changed by"] == value


# ---- Slack ----

def mrkdwn_texts(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [holder for _, holder, key in walk(payload["blocks"])
            if key == "text" and holder.get("type") == "mrkdwn"]


def all_texts(payload: dict[str, Any]) -> list[str]:
    return [payload["text"]] + [value for value, holder, key in walk(payload["blocks"])
                                if key == "text" and holder.get("type") in ("mrkdwn", "plain_text")]


def test_slack_payload_has_fallback_text_and_the_expected_blocks():
    payload = slack_payload(AlertMessage(make_alert(), suppressed_count=2))
    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith(
        "🟡 Medium: `Microsoft 365 Teams Custom Application Interaction Allowed`")
    assert "`admin@contoso.onmicrosoft.com`" in payload["text"]
    types = [block["type"] for block in payload["blocks"]]
    assert types == ["header", "section", "context", "section", "section", "actions"]
    header = payload["blocks"][0]["text"]
    assert header == {"type": "plain_text", "emoji": True,
                      "text": "🟡 Medium: Microsoft 365 Teams Custom Application Interaction Allowed"}
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in payload["blocks"][1]["fields"]}
    assert fields["*Changed by*"] == "`admin@contoso.onmicrosoft.com`"
    assert fields["*Source IP*"] == "`203.0.113.24`"
    assert fields["*Change*"] == "`False → True`"
    assert fields["*MITRE ATT&amp;CK*"] == "`Persistence (TA0003)`"
    assert fields["*Suppressed*"] == "`2 similar alerts since the last notice`"
    assert payload["blocks"][2]["elements"][0]["text"] == \
        "m365-detect · Alert id `106dc8f4e31e160b3e5e18bfcae0e4f1`"
    assert payload["blocks"][3]["text"]["text"].startswith("*Investigate*\n1. ")
    assert payload["blocks"][4]["text"]["text"].startswith("*Respond*\n1. ")
    buttons = payload["blocks"][5]["elements"]
    assert [b["url"] for b in buttons] == [PURVIEW_AUDIT_SEARCH, TEAMS_ADMIN_APPS,
                                           "https://attack.mitre.org/tactics/TA0003/"]
    assert len({b["action_id"] for b in buttons}) == len(buttons)


def test_slack_missing_values_show_a_dash_not_an_empty_code_span():
    payload = slack_payload(AlertMessage(make_alert(user_id=None, source_ip="")))
    fields = [f["text"] for f in payload["blocks"][1]["fields"]]
    assert "*Changed by*\n—" in fields and "*Source IP*\n—" in fields
    assert all("``" not in text for text in all_texts(payload))


@pytest.mark.parametrize(("name", "message"), MESSAGES, ids=IDS)
def test_slack_stays_within_block_kit_limits(name, message):
    payload = slack_payload(message)
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= 50
    assert len(payload["text"]) <= 3000
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 1 <= len(block["text"]["text"]) <= 3000
            for field in block.get("fields", []):
                assert 1 <= len(field["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        if block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
            for button in block["elements"]:
                assert len(button["text"]["text"]) <= 75 and len(button["url"]) <= 3000
    for holder in mrkdwn_texts(payload):
        assert holder["verbatim"] is True


CODE_SPAN = re.compile(r"`[^`]*`")


@pytest.mark.parametrize("payload", INJECTIONS)
def test_slack_shows_hostile_values_escaped_inside_code(payload):
    message = slack_payload(AlertMessage(injected_alert(payload)))
    shown = clean(payload)
    expected = "`" + slack_escape(shown.replace("`", "\u02cb")) + "`"
    fields = [f["text"] for block in message["blocks"] for f in block.get("fields", [])]
    assert f"*Changed by*\n{expected}" in fields
    assert f"*Source IP*\n{expected}" in fields
    for text in all_texts(message):
        # No raw control characters of Slack anywhere: no mention, no link, no entity we did not make.
        assert "<" not in text and ">" not in text
        assert "&" not in text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")
    for holder in mrkdwn_texts(message):
        outside_code = CODE_SPAN.sub("", holder["text"])
        for marker in ("**", "_now_", "~gone~", "[verify", "](", "<at>", "{{"):
            assert marker not in outside_code, (marker, holder["text"])
    assert "`" + slack_escape(f"Rule {shown}".replace("`", "\u02cb")) + "`" in message["text"]


def test_slack_header_is_plain_text_with_the_rule_name_escaped():
    message = slack_payload(AlertMessage(make_alert(rule_name="A <b> & <!channel>")))
    assert message["blocks"][0]["text"] == {"type": "plain_text", "emoji": True,
                                            "text": "🟡 Medium: A &lt;b&gt; &amp; &lt;!channel&gt;"}


def test_slack_escaping_never_splits_an_entity_when_cutting():
    message = slack_payload(AlertMessage(make_alert(user_id="&" * 5000)))
    field = next(f["text"] for f in message["blocks"][1]["fields"] if f["text"].startswith("*Changed by*"))
    body = field.split("\n", 1)[1].strip("`")
    assert body.endswith(TRUNCATION_MARKER)
    assert re.fullmatch(r"(&amp;)+" + re.escape(TRUNCATION_MARKER), body)


# ---- the other notices ----

def test_overflow_delivery_failed_and_health_titles():
    overflow = dict(all_messages())["overflow"]
    assert content_for(overflow).title.startswith("250 more alerts: Microsoft 365 Teams")
    error = "HTTP 410 from hooks.slack.com: channel_is_archived"
    failed = DeliveryFailedMessage(make_alert(), "slack", error)
    content = content_for(failed)
    assert content.title.startswith("Alert not delivered to slack: ")
    assert {f.label: f.value for f in content.facts}["Last error"] == error
    health = content_for(HealthMessage({"title": "Workload silent", "severity": "high", "workload": "Teams"}))
    assert health.title == "Workload silent" and health.severity == "high"
    assert [(f.label, f.value) for f in health.facts] == [("workload", "Teams")]


def test_an_undelivered_overflow_summary_is_announced_with_its_count_and_time_range():
    summary = overflow_message()
    failed = DeliveryFailedMessage(summary, "slack", "HTTP 410 from hooks.slack.com: channel_is_archived")
    assert (failed.alert, failed.overflow) == (None, summary)
    assert failed.key == f"{summary.key}-undelivered-slack"
    assert failed.key != DeliveryFailedMessage(summary, "teams", "x").key

    card = card_of(teams_payload(failed))
    title = card["body"][0]["items"][0]["inlines"][0]["text"]
    assert title == "Overflow summary not delivered to slack: Microsoft 365 Teams Custom Application " \
                    "Interaction Allowed"
    rows = fact_rows(card)
    assert rows["Destination"] == "slack" and rows["Alerts in the summary"] == "250"
    assert (rows["First event time"], rows["Last event time"]) == (summary.first_event_time,
                                                                   summary.last_event_time)
    assert rows["Rule id"] == summary.rule_id and rows["Last error"].startswith("HTTP 410")
    assert f"Notice id {summary.key}" in card["body"][-1]["inlines"][0]["text"]
    assert "Changed by" not in rows  # a summary has no single actor

    slack = slack_payload(failed)
    assert slack["text"].startswith("🟡 Medium: `Overflow summary not delivered to slack: ")
    fields = [f["text"] for block in slack["blocks"] for f in block.get("fields", [])]
    assert "*Alerts in the summary*\n`250`" in fields
    assert slack["blocks"][-2]["text"]["text"].startswith("*Respond*\n1. List the stored alerts")

    document = orjson.loads(body_bytes(failed))
    assert document["type"] == "delivery_failed" and document["id"] == failed.key
    assert document["overflow"] == dataclasses.asdict(summary) and "alert" not in document


def test_an_undelivered_overflow_summary_with_a_hostile_rule_name_stays_inert_in_slack():
    failed = dict(all_messages())["delivery-failed-overflow-hostile"]
    message = slack_payload(failed)
    for text in all_texts(message):
        assert "<" not in text and ">" not in text
    assert "`Overflow summary not delivered to teams: Rule &lt;!channel&gt;" in message["text"]
    title = card_of(teams_payload(failed))["body"][0]["items"][0]["inlines"][0]
    assert title["type"] == "TextRun" and title["text"].startswith("Overflow summary not delivered to teams: "
                                                                   "Rule <!channel>")  # as text, no markup


def test_overflow_keys_are_stable_and_distinct():
    first = dict(all_messages())["overflow"]
    again = OverflowMessage(**{**first.__dict__})
    other = OverflowMessage(**{**first.__dict__, "count": 251})
    assert first.key == again.key != other.key
