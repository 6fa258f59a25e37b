"""A one-line progress display on stderr for long inputs; silent unless stderr is a terminal or asked for."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`replay: 1 200/2 600 bodies (46 %), 12 alerts` redrawn in place, at most a few times a second."""

    def __init__(self, label: str, total: int | None, *, enabled: bool | None = None,
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.total = total
        self._last = 0.0
        self._drawn = False

    def update(self, done: int, note: str = "", *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        if self.total:
            text = f"{self.label}: {done:,}/{self.total:,} bodies ({100 * done // self.total} %)"
        else:
            text = f"{self.label}: {done:,} bodies"
        if note:
            text += f", {note}"
        self.stream.write("\r" + text.replace(",", " ") + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
