"""Teams: an Adaptive Card 1.4 in the message envelope a Workflows webhook trigger accepts.

The retired Office 365 connector format (MessageCard) is not sent. Every string of the content goes
into a RichTextBlock TextRun: the Adaptive Card schema renders TextRun text as-is (no Markdown), so a
user name like `[x](https://y)` or `**x**` shows exactly as written instead of becoming a link or bold,
without escapes that some Teams clients would display literally. The card must fit in Teams' ~28 KB
message limit; long values are cut with a marker, harder the bigger the card would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from detection.notify.base import Message, Outcome
from detection.notify.chat import ChatDestination
from detection.notify.content import Content, GuideLike, content_for
from detection.notify.text import truncate

CARD_VERSION = "1.4"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_MESSAGE_BYTES = 28_000
TITLE_CHARS = 200
# Tried in turn until the whole message fits in MAX_MESSAGE_BYTES.
VALUE_LIMITS = (1000, 400, 160, 60, 24)

_STYLE = {"critical": "attention", "high": "attention", "medium": "warning", "low": "accent"}
_KIND_WORDS = {"alert": "alert", "overflow": "alert overflow", "delivery_failed": "delivery failure",
               "health": "health notice"}


def text_run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def rich_text(*inlines: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(inlines), **props}


def card(content: Content, value_limit: int = VALUE_LIMITS[0]) -> dict[str, Any]:
    """The Adaptive Card for `content`, each value cut to `value_limit` characters."""
    style = _STYLE.get(content.severity or "", "emphasis")
    colour = _STYLE.get(content.severity or "", "default")
    kind = _KIND_WORDS.get(content.kind, content.kind)
    subtitle = f"{content.severity.capitalize()} severity {kind}" if content.severity else kind.capitalize()
    header: list[dict[str, Any]] = [
        rich_text(text_run(truncate(content.title, TITLE_CHARS), size="Large", weight="Bolder",
                           color=colour)),
        rich_text(text_run(subtitle, isSubtle=True), spacing="None"),
    ]
    if content.intro:
        header.append(rich_text(text_run(truncate(content.intro, value_limit))))
    body: list[dict[str, Any]] = [{"type": "Container", "style": style, "bleed": True, "items": header}]
    body += [_fact_row(f.label, truncate(f.value, value_limit)) for f in content.facts]
    for steps in content.steps:
        body.append(rich_text(text_run(steps.title, weight="Bolder"), spacing="Medium", separator=True))
        body += [rich_text(text_run(f"{i}. {truncate(item, value_limit)}"), spacing="Small")
                 for i, item in enumerate(steps.items, 1)]
    ref = content.reference
    body.append(rich_text(text_run(f"m365-detect · {ref.label} {truncate(ref.value, 100)}", size="Small",
                                   isSubtle=True), spacing="Medium", separator=True))
    result: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if content.links:
        result["actions"] = [{"type": "Action.OpenUrl", "title": truncate(link.title, 40), "url": link.url}
                             for link in content.links]
    return result


def _fact_row(label: str, value: str) -> dict[str, Any]:
    # Weighted widths line the labels up across rows, like a FactSet, whose values Teams would
    # treat as Markdown.
    return {
        "type": "ColumnSet",
        "spacing": "Small",
        "columns": [
            {"type": "Column", "width": 2,
             "items": [rich_text(text_run(truncate(label, 60), weight="Bolder"))]},
            {"type": "Column", "width": 5, "items": [rich_text(text_run(value))]},
        ],
    }


def envelope(card_json: dict[str, Any]) -> dict[str, Any]:
    """The body a Workflows "When a Teams webhook request is received" trigger takes."""
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card_json}],
    }


def payload(content: Content) -> dict[str, Any]:
    """The envelope with the largest value limit whose message still fits in MAX_MESSAGE_BYTES."""
    message: dict[str, Any] = {}
    for limit in VALUE_LIMITS:
        message = envelope(card(content, limit))
        if len(orjson.dumps(message)) <= MAX_MESSAGE_BYTES:
            return message
    return message  # bounded anyway: at most 20 facts of 24 characters


def teams_payload(message: Message, guides: Mapping[str, GuideLike] | None = None) -> dict[str, Any]:
    return payload(content_for(message, guides))


class TeamsDestination(ChatDestination):
    name = "teams"
    build_payload = staticmethod(payload)
    min_interval = 0.25  # Workflows throttles above ~4 requests a second

    def success(self, response: httpx.Response) -> Outcome:
        # The flow answers 202 with an empty body: the message is queued, not known to be posted.
        return Outcome("accepted", response.status_code)
