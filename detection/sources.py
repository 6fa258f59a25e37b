"""Event Hub bodies → raw audit records, whatever shape the producer chose.

Producers differ and do not say which shape they send, so the shape is read from the content: one
record, a JSON array (a Management Activity API content blob), NDJSON, an Azure Monitor style
`{"records": [...]}` envelope, or a Defender XDR streaming envelope whose items carry the audit record in
`properties.RawEventData` (an object, or the same object serialised as a JSON string). Any of these may
be gzip-compressed.

A body we cannot use never raises: it becomes a `Skip` with a specific reason, so one bad body (or one
bad NDJSON line, or one bad array item) costs only itself and is always counted. Everything here is pure.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from detection.settings import Settings

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# Keys every Management Activity record has; an object with none of them is not an audit record.
RECORD_KEYS = ("Id", "Operation", "CreationTime", "RecordType")

# Skip reasons (the complete list; statistics and health counters are keyed by them).
INVALID_JSON = "invalid_json"
INVALID_UTF8 = "invalid_utf8"
INVALID_GZIP = "invalid_gzip"
NOT_A_RECORD = "not_a_record"
TOO_LARGE = "too_large"
TOO_DEEP = "too_deep"
TOO_MANY_RECORDS = "too_many_records"
EMPTY = "empty"
SKIP_REASONS = (INVALID_JSON, INVALID_UTF8, INVALID_GZIP, NOT_A_RECORD, TOO_LARGE, TOO_DEEP,
                TOO_MANY_RECORDS, EMPTY)


@dataclass(frozen=True)
class Limits:
    """Bounds on what one body may cost: bytes after decompression, nesting, records taken."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_depth: int = 64
    max_records_per_body: int = 100_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_depth, settings.max_records_per_body)


@dataclass(frozen=True)
class SourceRecord:
    """One raw audit record; `event_time` is the Defender envelope's properties.Timestamp, else None."""

    raw: dict[str, Any]
    event_time: str | None = None


@dataclass(frozen=True)
class Skip:
    """Something in a body we could not use. `count` is how many records or lines it stands for."""

    reason: str
    detail: str
    body_index: int
    count: int = 1


@dataclass
class Decoded:
    """The records of one body, the skips, and how many records a `keep` filter set aside unexamined."""

    records: list[SourceRecord] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    filtered: int = 0

    @property
    def total(self) -> int:
        """Records found in the body, whether returned or set aside by the filter."""
        return len(self.records) + self.filtered


class BodyError(ValueError):
    """A body that cannot be decoded at all; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---- gzip ----

def decompress(body: bytes, limits: Limits) -> bytes:
    """The body's bytes, gunzipped when they start with the gzip magic; at most max_body_bytes.

    Decompression stops one byte past the limit, so a gzip bomb costs the limit, not its full size.
    Concatenated gzip members (which `gzip` writers may produce) are joined. Raises BodyError.
    """
    limit = limits.max_body_bytes
    if len(body) > limit:
        raise BodyError(TOO_LARGE, f"{len(body)} bytes, more than the limit of {limit}")
    if not body.startswith(GZIP_MAGIC):
        return body
    parts: list[bytes] = []
    total = 0
    data = body
    while data:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(data, limit - total + 1)
        except zlib.error as exc:
            raise BodyError(INVALID_GZIP, str(exc)) from None
        total += len(chunk)
        if total > limit:
            raise BodyError(TOO_LARGE, f"more than {limit} bytes after gzip decompression")
        if not inflater.eof:
            raise BodyError(INVALID_GZIP, "compressed data ends before the end of the gzip stream")
        parts.append(chunk)
        data = inflater.unused_data
        if data and not data.startswith(GZIP_MAGIC):
            if data.strip(b"\x00"):
                raise BodyError(INVALID_GZIP, f"{len(data)} bytes of trailing data after the gzip stream")
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


# ---- JSON ----

def _depth_exceeds(value: Any, allowed: int) -> bool:
    """True when `value` nests more than `allowed` containers deep.

    An explicit stack, not recursion: the point is to protect recursive code further on (the ECS
    mapping, the query predicates) from documents orjson accepts (up to 1024 levels).
    """
    if allowed < 1:
        return True
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        children = node.values() if type(node) is dict else node
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                if depth >= allowed:
                    return True
                push((child, depth + 1))
    return False


def _json_error(exc: orjson.JSONDecodeError, data: bytes) -> tuple[str, str]:
    """Reason and detail for a document orjson rejected: bad UTF-8, too deep, or bad JSON."""
    message = str(exc)
    if message.startswith("depth limit exceeded"):
        return TOO_DEEP, "more than 1024 levels of nesting"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return INVALID_UTF8, f"byte {uexc.start}: {uexc.reason}"
    return INVALID_JSON, message


def _is_record(value: dict[str, Any]) -> bool:
    return any(key in value for key in RECORD_KEYS)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number"}.get(type(value), "null")


class _Collector:
    """Turns parsed JSON documents of one body into records and skips, within the body's limits."""

    def __init__(self, limits: Limits, index: int, keep: Callable[[dict[str, Any]], bool] | None) -> None:
        self.limits = limits
        self.index = index
        self.keep = keep
        self.out = Decoded()
        self.room = limits.max_records_per_body

    def skip(self, reason: str, detail: str, count: int = 1) -> None:
        self.out.skips.append(Skip(reason, detail, self.index, count))

    def overflow(self, count: int) -> None:
        self.skip(TOO_MANY_RECORDS,
                  f"{count} more beyond the limit of {self.limits.max_records_per_body} per body", count)

    def document(self, doc: Any, where: str) -> None:
        """One top-level JSON value: a record, an array of them, or an envelope."""
        if type(doc) is dict:
            items = doc.get("records")
            if _is_record(doc):
                self.item(doc, where, base=0)
            elif type(items) is list:
                self.items(items, where, base=2)
            elif "records" in doc:  # an envelope by its shape, so say what is wrong with it
                self.skip(NOT_A_RECORD,
                          f"{where}records is a JSON {_type_name(items)}, not an array of records")
            else:
                self.item(doc, where, base=0)
        elif type(doc) is list:
            self.items(doc, where, base=1)
        else:
            self.skip(NOT_A_RECORD, f"{where}is a JSON {_type_name(doc)}, not an audit record")

    def items(self, items: list[Any], where: str, base: int) -> None:
        if len(items) > self.room:
            self.overflow(len(items) - self.room)
            items = items[: self.room]
        for position, item in enumerate(items):
            self.item(item, f"{where}item {position}: ", base)

    def item(self, item: Any, where: str, base: int) -> None:
        """One array item or object: a Defender envelope item, an audit record, or neither."""
        if self.room <= 0:
            self.overflow(1)
            return
        self.room -= 1
        if type(item) is not dict:
            self.skip(NOT_A_RECORD, f"{where}is a JSON {_type_name(item)}, not an object")
            return
        event_time = None
        raw: Any = item
        properties = item.get("properties")
        if type(properties) is dict and "RawEventData" in properties:
            raw = properties["RawEventData"]
            stamp = properties.get("Timestamp")
            event_time = stamp if type(stamp) is str else None
            base += 2
            if type(raw) is str:
                try:
                    raw = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    reason, detail = _json_error(exc, raw.encode("utf-8", "surrogatepass"))
                    self.skip(reason, f"{where}properties.RawEventData: {detail}")
                    return
            if type(raw) is not dict:
                self.skip(NOT_A_RECORD, f"{where}properties.RawEventData is a JSON {_type_name(raw)}")
                return
        if not _is_record(raw):
            self.skip(NOT_A_RECORD, f"{where}object has none of the keys {', '.join(RECORD_KEYS)}")
            return
        if self.keep is not None and not self.keep(raw):
            self.out.filtered += 1
            return
        if _depth_exceeds(raw, self.limits.max_depth - base):
            self.skip(TOO_DEEP, f"{where}nested deeper than {self.limits.max_depth} levels")
            return
        self.out.records.append(SourceRecord(raw, event_time))


_JSON_SPACE = b" \t\r\n"
_PAIRS = ((b"[", b"]"), (b"{", b"}"))


def looks_complete(data: bytes) -> bool:
    """A cheap necessary sign of a whole JSON body: it opens and closes with a matching bracket pair.

    Bodies cut short in transit almost never do, so a caller that would otherwise not parse a body (the
    engine's prefilter) parses those anyway and counts them as the skips they are. Looks at 64 bytes
    at each end only; a body padded with more whitespace than that is simply parsed.
    """
    head = data[3:67] if data.startswith(UTF8_BOM) else data[:64]
    first = head.lstrip(_JSON_SPACE)[:1]
    last = data[-64:].rstrip(_JSON_SPACE)[-1:]
    return (first, last) in _PAIRS


def _lines(text: bytes) -> Iterable[tuple[int, bytes]]:
    for number, line in enumerate(text.split(b"\n"), 1):
        line = line.strip()
        if line:
            yield number, line


def decode_json(
    data: bytes,
    limits: Limits,
    index: int = 0,
    *,
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> Decoded:
    """Records of an uncompressed body. `keep(raw)` False sets a record aside unexamined (counted only).

    The whole body is parsed as one document first (the common case: one orjson call); only when that
    fails and the body has several lines is it read as NDJSON, line by line, so a bad line costs only
    itself. A body where no line parses is one skip, not one per line.
    """
    collector = _Collector(limits, index, keep)
    text = data[3:] if data.startswith(UTF8_BOM) else data
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if not text.strip():
            collector.skip(EMPTY, "the body is empty")
            return collector.out
        if b"\n" in text:
            _decode_lines(collector, text, exc)
        else:
            collector.skip(*_json_error(exc, text))
        return collector.out
    collector.document(doc, "")
    out = collector.out
    if not out.records and not out.skips and not out.filtered:
        collector.skip(EMPTY, "the body holds no records")
    return out


def _decode_lines(collector: _Collector, text: bytes, exc: orjson.JSONDecodeError) -> None:
    """NDJSON: each line a document. If no line parses, the body was simply not JSON: one skip."""
    skips = collector.out.skips
    first_skip = len(skips)
    parsed = 0
    lines = list(_lines(text))
    for position, (number, line) in enumerate(lines):
        if collector.room <= 0:
            collector.overflow(len(lines) - position)
            break
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as line_exc:
            line_reason, line_detail = _json_error(line_exc, line)
            collector.skip(line_reason, f"line {number}: {line_detail}")
            collector.room -= 1
            continue
        parsed += 1
        collector.document(doc, f"line {number}: ")
    if parsed == 0:
        del skips[first_skip:]
        collector.skip(*_json_error(exc, text))


def decode_document(data: bytes, limits: Limits) -> dict[str, Any]:
    """One JSON object that is not a body (an ECS document of a one-per-line file, say), held to the
    same size and depth limits as bodies so that nothing downstream meets a document it cannot walk.
    A BOM and surrounding whitespace are allowed. Raises BodyError with one of SKIP_REASONS."""
    if len(data) > limits.max_body_bytes:
        raise BodyError(TOO_LARGE, f"{len(data)} bytes, more than the limit of {limits.max_body_bytes}")
    text = data[3:] if data.startswith(UTF8_BOM) else data
    if not text.strip():
        raise BodyError(EMPTY, "nothing but whitespace")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BodyError(*_json_error(exc, text)) from None
    if type(doc) is not dict:
        raise BodyError(NOT_A_RECORD, f"is a JSON {_type_name(doc)}, not an object")
    if _depth_exceeds(doc, limits.max_depth):
        raise BodyError(TOO_DEEP, f"nested deeper than {limits.max_depth} levels")
    return doc


def decode_body(
    body: bytes,
    limits: Limits,
    index: int = 0,
    *,
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> Decoded:
    """Records of one Event Hub body as received (gzip or not); never raises on bad input."""
    try:
        data = decompress(body, limits)
    except BodyError as exc:
        return Decoded(skips=[Skip(exc.reason, exc.detail, index)])
    return decode_json(data, limits, index, keep=keep)
