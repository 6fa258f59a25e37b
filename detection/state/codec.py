"""Alerts as Table entities, bounded so a write never fails on the service's size limits.

The limits (Azure Table Storage): an entity ≤ 1 MiB, ≤ 252 properties, a string property ≤ 64 KiB,
all counted in UTF-16. An audit record is normally a few KiB, but it is attacker-influenced data, so the
raw record and the ECS document are JSON-serialised and split over a fixed, small number of string
properties; a document too large for them is shrunk (long strings cut, with a marker saying how much)
and, failing that, replaced by a preview, with `<name>_truncated` set on the entity. Scalar fields are
cut to a few KiB. The sum stays well under 1 MiB, which `entity_size` lets the tests check.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from detection.alerts import Alert

MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTIES = 252
MAX_STRING_BYTES = 64 * 1024
CHUNK_UNITS = 30_000  # UTF-16 code units per string property: 60 000 bytes, under 64 KiB
DOC_CHUNKS = 5  # per document: 150 000 units (300 KB) each for raw and ECS
FIELD_UNITS = 4_096  # scalar text fields (user ids, values, names)
TRUNCATION_MARK = "…[truncated {} chars]"

ALERT_FIELDS = ("rule_id", "rule_name", "severity", "record_id", "event_time", "tenant_id", "user_id",
                "source_ip", "old_value", "new_value")
# The rule's investigation and response steps travel with the alert (a redelivery days later renders
# what the rule said when it fired); rule files are ours, but bound them like everything else.
STEP_FIELDS = ("investigation", "response")
MAX_STEPS = 16
STEP_UNITS = 1000


def utf16_units(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clip(text: str | None, limit: int = FIELD_UNITS) -> str | None:
    """`text` cut to `limit` UTF-16 units, the cut marked with how many characters were dropped."""
    if text is None or utf16_units(text) <= limit:
        return text
    keep = max(0, limit - 40)
    head = _prefix_units(text, keep)
    return head + TRUNCATION_MARK.format(len(text) - len(head))


def _prefix_units(text: str, units: int) -> str:
    """The longest prefix of `text` that is at most `units` UTF-16 code units."""
    if text.isascii():
        return text[:units]
    total = 0
    for index, char in enumerate(text):
        total += 2 if ord(char) > 0xFFFF else 1
        if total > units:
            return text[:index]
    return text


def split_units(text: str, size: int = CHUNK_UNITS) -> list[str]:
    """`text` in pieces of at most `size` UTF-16 units (never splitting a character)."""
    chunks: list[str] = []
    while text:
        head = _prefix_units(text, size)
        chunks.append(head)
        text = text[len(head):]
    return chunks


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _cut_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, dict):
        return {str(k): _cut_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cut_strings(v, limit) for v in value]
    return value


def bound_document(doc: Any, max_units: int) -> tuple[str, bool]:
    """JSON text of `doc` within `max_units` UTF-16 units, and whether anything had to be cut.

    First every long string is cut (keeping the document's shape and every short field, which is what
    an analyst reads); if the structure itself is too large, a marked preview of the JSON replaces it.
    """
    text = _dumps(doc)
    if utf16_units(text) <= max_units:
        return text, False
    limit = max_units // 8
    while limit >= 64:
        shrunk = _cut_strings(doc, limit)
        if isinstance(shrunk, dict):
            shrunk = {"_truncated": True, **shrunk}
        candidate = _dumps(shrunk)
        if utf16_units(candidate) <= max_units:
            return candidate, True
        limit //= 2
    # Escaping can double the preview's length (quotes, backslashes), so aim well below the cap.
    units = max_units // 3
    while True:
        fallback = _dumps({"_truncated": True, "_original_chars": len(text),
                           "_preview": _prefix_units(text, units)})
        if utf16_units(fallback) <= max_units or units == 0:
            return fallback, True
        units //= 2


def put_document(entity: dict[str, Any], name: str, doc: Any, chunks: int = DOC_CHUNKS) -> None:
    text, truncated = bound_document(doc, chunks * CHUNK_UNITS)
    parts = split_units(text)
    for index, part in enumerate(parts):
        entity[f"{name}_{index}"] = part
    entity[f"{name}_chunks"] = len(parts)
    entity[f"{name}_truncated"] = truncated


def get_document(entity: dict[str, Any], name: str) -> Any:
    count = int(entity.get(f"{name}_chunks") or 0)
    text = "".join(str(entity.get(f"{name}_{i}", "")) for i in range(count))
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"_truncated": True, "_preview": text[:1000]}


def alert_properties(alert: Alert) -> dict[str, Any]:
    """The alert's own fields as entity properties (keys, status and ledger are the store's)."""
    props: dict[str, Any] = {name: clip(getattr(alert, name)) for name in ALERT_FIELDS}
    props["alert_id"] = alert.alert_id
    props["risk_score"] = int(alert.risk_score)
    props["threat"] = clip(_dumps(list(alert.threat)), CHUNK_UNITS)
    for name in STEP_FIELDS:
        props[name] = _dumps([clip(str(step), STEP_UNITS) for step in getattr(alert, name)[:MAX_STEPS]])
    put_document(props, "raw", alert.raw)
    put_document(props, "ecs", alert.ecs)
    return props


def alert_from_entity(entity: dict[str, Any]) -> Alert:
    """The Alert back from its entity (documents as stored, so possibly truncated and marked)."""
    try:
        threat = tuple(json.loads(entity.get("threat") or "[]"))
    except json.JSONDecodeError:
        threat = ()
    return Alert(
        alert_id=str(entity["alert_id"]),
        rule_id=str(entity.get("rule_id") or ""),
        rule_name=str(entity.get("rule_name") or ""),
        severity=str(entity.get("severity") or ""),
        risk_score=int(entity.get("risk_score") or 0),
        threat=threat,
        record_id=str(entity.get("record_id") or ""),
        event_time=str(entity.get("event_time") or ""),
        tenant_id=str(entity.get("tenant_id") or ""),
        user_id=entity.get("user_id"),
        source_ip=entity.get("source_ip"),
        old_value=entity.get("old_value"),
        new_value=entity.get("new_value"),
        ecs=get_document(entity, "ecs"),
        raw=get_document(entity, "raw"),
        investigation=_steps(entity.get("investigation")),
        response=_steps(entity.get("response")),
    )


def _steps(text: Any) -> tuple[str, ...]:
    steps = loads(text, [])
    return tuple(str(step) for step in steps) if isinstance(steps, list) else ()


def dumps(value: Any) -> str:
    """Compact JSON for small structured properties (ledger, notice bodies)."""
    return _dumps(value)


def loads(text: Any, default: Any) -> Any:
    if not isinstance(text, str) or not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default


def _value_size(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return 4 if -(2**31) <= value < 2**31 else 8
    if isinstance(value, float | datetime):
        return 8
    if isinstance(value, bytes):
        return len(value) + 4
    return utf16_units(str(value)) * 2 + 4


def entity_size(entity: dict[str, Any]) -> int:
    """The service's own size formula: 4 + keys×2 + Σ(8 + name×2 + value size), in bytes."""
    size = 4 + utf16_units(str(entity.get("PartitionKey", ""))) * 2 + utf16_units(
        str(entity.get("RowKey", ""))) * 2
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        size += 8 + utf16_units(name) * 2 + _value_size(value)
    return size


def check_limits(entity: dict[str, Any]) -> None:
    """Raise ValueError if `entity` would break a service limit (a bug in this module, never data)."""
    if len(entity) - 2 > MAX_PROPERTIES:
        raise ValueError(f"entity has {len(entity) - 2} properties, more than {MAX_PROPERTIES}")
    for name, value in entity.items():
        if isinstance(value, str) and utf16_units(value) * 2 > MAX_STRING_BYTES:
            raise ValueError(f"property {name} is larger than 64 KiB")
    size = entity_size(entity)
    if size > MAX_ENTITY_BYTES:
        raise ValueError(f"entity is {size} bytes, more than 1 MiB")


def utc(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
