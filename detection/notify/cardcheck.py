"""Run cardcheck.js (Microsoft's Adaptive Cards SDK under node) over cards from Python.

The tests check every card they build with it, and `python -m detection preview` uses it to render a
card to an HTML page; both go through this one wrapper so the node invocation is defined once.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from detection.notify.teams import CARD_VERSION, MAX_MESSAGE_BYTES

CARDCHECK_JS = Path(__file__).with_name("cardcheck.js")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SDK_BUNDLE = PROJECT_ROOT / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.js"


class CardCheckUnavailable(RuntimeError):
    """node or the adaptivecards package is missing; the message says how to get them."""


@dataclass(frozen=True)
class CheckResult:
    returncode: int
    lines: tuple[str, ...]
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(line for line in self.lines if line.startswith("FAIL "))


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise CardCheckUnavailable("node is not on PATH: install Node.js 20 or later")
    if not SDK_BUNDLE.is_file():
        raise CardCheckUnavailable(f"{SDK_BUNDLE} is missing: run `npm ci` in the project folder")
    return node


def check_cards(cards: Sequence[Mapping[str, Any]], *, html: Path | None = None, before_html: str = "",
                after_html: str = "", timeout: float = 120) -> CheckResult:
    """Check `cards` (Adaptive Cards or Teams envelopes) in one node run.

    With `html`, also write a page with every card rendered, between the two (trusted) HTML fragments.
    """
    node = node_binary()
    with tempfile.TemporaryDirectory(prefix="cardcheck-") as tmp:
        source = Path(tmp) / "cards.json"
        source.write_bytes(orjson.dumps(list(cards)))
        args = [node, str(CARDCHECK_JS), "--version", CARD_VERSION, "--max-bytes", str(MAX_MESSAGE_BYTES)]
        if html is not None:
            args += ["--html", str(html)]
            for option, fragment in (("--before", before_html), ("--after", after_html)):
                if fragment:
                    path = Path(tmp) / f"{option[2:]}.html"
                    path.write_text(fragment, encoding="utf-8")
                    args += [option, str(path)]
        args.append(str(source))
        # A fixed argument list (no shell); the only inputs are our own file names.
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    return CheckResult(done.returncode, tuple(done.stdout.splitlines()), done.stderr)
