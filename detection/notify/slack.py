"""Slack: Block Kit for an incoming webhook (header, fields, context, steps, link buttons) with a
plain `text` fallback for notifications.

Every value is escaped (`&`, `<`, `>`), so `<!channel>` or `<https://x|y>` cannot ping or link, and
shown as inline code, where Slack applies no bold, italics or strike; mrkdwn objects are `verbatim`, so
Slack does not turn a bare `@channel` or channel name into a mention either. The builder keeps within
Slack's limits (50 blocks, 10 fields of 2 000 characters, 3 000 characters a section, 150 a header).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from detection.notify.base import Message, Outcome
from detection.notify.chat import ChatDestination
from detection.notify.content import NOT_SET, Content, GuideLike, content_for
from detection.notify.text import slack_code, slack_escape, truncate

MAX_BLOCKS = 50
HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
FIELDS_PER_SECTION = 10
BUTTON_TEXT_CHARS = 75
MAX_BUTTONS = 25
FALLBACK_CHARS = 3000
FALLBACK_FACTS = 4

_EMOJI = {"critical": "🔴", "high": "🟠", "medium": "🟡", "low": "🔵"}


def fit(text: str, limit: int, render: Callable[[str], str] = slack_escape) -> str:
    """`render(text)` cut so that the rendered form (escaped, quoted) stays within `limit` characters."""
    keep = min(len(text), limit)
    while True:
        out = render(truncate(text, keep))
        if len(out) <= limit or keep <= 0:
            return out
        # Escaping grows text unevenly (`&` is five characters): shrink in proportion, at least by one.
        keep = min(keep - 1, keep * limit // len(out))


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _value(value: str, limit: int) -> str:
    return NOT_SET if value == NOT_SET else fit(value, limit, slack_code)


def _field(label: str, value: str) -> dict[str, Any]:
    head = f"*{fit(label, 100)}*\n"
    return mrkdwn(head + _value(value, FIELD_CHARS - len(head)))


def _prefix(content: Content) -> str:
    severity = content.severity
    return f"{_EMOJI[severity]} {severity.capitalize()}: " if severity else "ℹ️ "


def blocks(content: Content) -> list[dict[str, Any]]:
    heading = fit(_prefix(content) + content.title, HEADER_CHARS)
    result: list[dict[str, Any]] = [{"type": "header", "text": plain(heading)}]
    if content.intro:
        result.append({"type": "section", "text": mrkdwn(fit(content.intro, SECTION_CHARS))})
    facts = list(content.facts)
    for start in range(0, len(facts), FIELDS_PER_SECTION):
        chunk = facts[start:start + FIELDS_PER_SECTION]
        result.append({"type": "section", "fields": [_field(f.label, f.value) for f in chunk]})
    ref = content.reference
    result.append({"type": "context", "elements": [
        mrkdwn(f"m365-detect · {fit(ref.label, 40)} {_value(ref.value, 200)}")]})
    for steps in content.steps:
        result.append({"type": "section", "text": mrkdwn(_steps_text(steps.title, steps.items))})
    if content.links:
        result.append({"type": "actions", "elements": [
            {"type": "button", "action_id": f"link-{i}", "url": link.url,
             "text": plain(fit(link.title, BUTTON_TEXT_CHARS))}
            for i, link in enumerate(content.links[:MAX_BUTTONS])]})
    return result[:MAX_BLOCKS]


def _steps_text(title: str, items: tuple[str, ...]) -> str:
    head = f"*{fit(title, 100)}*"
    lines = [head]
    budget = SECTION_CHARS - len(head)
    per_item = max(40, budget // max(1, len(items)) - 6)
    for i, item in enumerate(items, 1):
        line = f"{i}. {fit(item, per_item)}"
        if len(line) + 1 > budget:
            break
        lines.append(line)
        budget -= len(line) + 1
    return "\n".join(lines)


def fallback_text(content: Content) -> str:
    """What notifications and clients without Block Kit show: heading and the first facts."""
    facts = "; ".join(f"{slack_escape(f.label)}: {_value(f.value, 400)}"
                      for f in content.facts[:FALLBACK_FACTS])
    text = _prefix(content) + fit(content.title, 300, slack_code) + (f" — {facts}" if facts else "")
    return truncate(text, FALLBACK_CHARS)


def payload(content: Content) -> dict[str, Any]:
    return {"text": fallback_text(content), "blocks": blocks(content)}


def slack_payload(message: Message, guides: Mapping[str, GuideLike] | None = None) -> dict[str, Any]:
    return payload(content_for(message, guides))


class SlackDestination(ChatDestination):
    name = "slack"
    build_payload = staticmethod(payload)
    min_interval = 1.0  # Slack allows about one message a second per webhook

    def success(self, response: httpx.Response) -> Outcome:
        # Slack confirms a posted message with the body "ok"; any other 2xx is taken, not confirmed.
        if response.text.strip() == "ok":
            return Outcome("delivered", response.status_code)
        return Outcome("accepted", response.status_code, f"unexpected answer from {self.host}")
