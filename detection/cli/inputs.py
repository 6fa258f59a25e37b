"""How command-line tools read Event Hub bodies from files: the one convention every command shares.

A file is one body (bytes as they would arrive, gzip included); a `.jsonl`/`.ndjson` file is one body
per line, as a producer that sends one record per event would; `-` (or no path at all) is one body
from standard input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

LINE_SUFFIXES = (".jsonl", ".ndjson")


class InputError(OSError):
    """An input path we cannot read; the message names the path."""


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _numbered_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers in the file (blank lines still count)."""
    for number, line in enumerate(data.splitlines(), 1):
        if line.strip():
            yield number, line


def iter_bodies(paths: Sequence[str]) -> Iterator[bytes]:
    """Bodies in input order: a file whole, or a `.jsonl`/`.ndjson` file one body per line."""
    for path in paths or ["-"]:
        data = _read(path)
        if path.lower().endswith(LINE_SUFFIXES):
            for _, line in _numbered_lines(data):
                yield line
        else:
            yield data


def iter_lines(paths: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
    """Every non-blank line of every path, whatever its extension, with where it is (for messages):
    the path (`stdin` for `-`) and the line number."""
    for path in paths or ["-"]:
        where = "stdin" if path == "-" else path
        for number, line in _numbered_lines(_read(path)):
            yield where, number, line


def batches(bodies: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    """Bodies grouped the way the trigger delivers them, so long inputs run in bounded memory."""
    batch: list[bytes] = []
    for body in bodies:
        batch.append(body)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def count_bodies(paths: Sequence[str]) -> int | None:
    """How many bodies `iter_bodies` will yield, for progress bars; None when it cannot know cheaply."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        if path.lower().endswith(LINE_SUFFIXES):
            try:
                with open(path, "rb") as handle:
                    total += sum(1 for line in handle if line.strip())
            except OSError:
                return None
        else:
            total += 1
    return total
