"""The console: what would be sent, printed, when no webhook is configured.

Alerts are stored either way; this makes a fresh deployment or `make demo` show its notifications
instead of dropping them silently. Values are cleaned (no control characters), so a crafted user name
cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from detection.notify.base import Destination, Message, Outcome
from detection.notify.content import Content, GuideLike, content_for
from detection.notify.text import truncate

VALUE_CHARS = 1000
NOTE = "(no webhook configured: this is what would be sent)"


def render_text(content: Content) -> str:
    severity = f"[{content.severity.upper()}] " if content.severity else ""
    lines = [f"{severity}{content.title}", f"  {NOTE}"]
    if content.intro:
        lines.append(f"  {content.intro}")
    width = max((len(f.label) for f in content.facts), default=0)
    lines += [f"  {f.label.ljust(width)}  {truncate(f.value, VALUE_CHARS)}" for f in content.facts]
    for steps in content.steps:
        lines.append(f"  {steps.title}:")
        lines += [f"    {i}. {truncate(item, VALUE_CHARS)}" for i, item in enumerate(steps.items, 1)]
    if content.links:
        lines.append("  Links:")
        lines += [f"    {link.title}: {link.url}" for link in content.links]
    lines.append(f"  {content.reference.label}: {content.reference.value}")
    return "\n".join(lines) + "\n"


class ConsoleDestination(Destination):
    name = "console"

    def __init__(self, stream: TextIO | None = None, *, guides: Mapping[str, GuideLike] | None = None,
                 min_severity: str = "low") -> None:
        super().__init__(min_severity=min_severity)
        self._stream = stream
        self.guides = guides

    def send(self, message: Message) -> Outcome:
        stream = self._stream or sys.stdout
        try:
            stream.write(render_text(content_for(message, self.guides)) + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:
            return Outcome("retry", None, f"console not writable: {type(exc).__name__}")
        return Outcome("delivered")
