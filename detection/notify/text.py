"""Text hygiene shared by every message format: cleaning, truncation and Slack escaping.

Values in an alert come from audit records, so anyone who can name a user, a setting or an app in a
tenant controls them. Every renderer passes them through here, so that a value can neither draw its own
layout (line breaks, terminal escape codes, right-to-left overrides) nor grow a message past a chat
service's size limits.
"""

from __future__ import annotations

import re

TRUNCATION_MARKER = "…[truncated]"

# C0/C1 control characters (line breaks, tabs, ESC for terminal codes) and the Unicode line separators:
# a value is shown on one line, so none of them can fake extra lines or recolour a console.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Bidirectional overrides can make "moc.evil" read as "live.com"; show that something was there instead.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r" {2,}")


def clean(value: object) -> str:
    """One display line: control characters become spaces, direction overrides become U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    text = _CONTROL.sub(" ", text)
    text = _BIDI.sub("\ufffd", text)
    return _SPACES.sub(" ", text).strip()


def truncate(text: str, limit: int, marker: str = TRUNCATION_MARKER) -> str:
    """`text` cut to at most `limit` characters, ending with `marker` when something was cut."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return marker[:limit]
    return text[: limit - len(marker)].rstrip() + marker


def slack_escape(text: str) -> str:
    """Slack's three control characters as entities: no `<!channel>`, `<@U…>` or `<url|label>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_code(text: str) -> str:
    """A value as inline code, where Slack applies no bold, italics, strike or links.

    Slack has no escape for the backtick, so one inside the value becomes the look-alike U+02CB; the
    stored alert and the webhook JSON keep the original.
    """
    return "`" + slack_escape(text.replace("`", "\u02cb")) + "`"
