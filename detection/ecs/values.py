"""Scalar conversions Elastic's ingest processors apply (date, convert, json), reproduced for plain data.

Each helper returns None (or the value untouched) instead of raising, because one odd value must cost
only that value, never the record or the batch.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?)?"
    r"(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)

_PLAIN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


def iso_utc(value: object) -> str | None:
    """ISO-8601 text -> Elastic's @timestamp form `YYYY-MM-DDTHH:MM:SS.mmmZ`; no zone means UTC.

    Elastic stores millisecond precision, so finer digits are cut, not rounded. None when unparseable.
    """
    if value.__class__ is not str:
        return None
    if _PLAIN.fullmatch(value):  # type: ignore[arg-type]  # the Management API's own form
        try:
            datetime.fromisoformat(value)  # type: ignore[arg-type]
        except ValueError:
            return None
        return value + ".000Z"  # type: ignore[operator]
    m = _ISO.fullmatch(value)  # type: ignore[arg-type]
    if m is None:
        m = _ISO.fullmatch(value.strip())  # type: ignore[union-attr]
        if m is None:
            return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    millis = (frac or "")[:3].ljust(3, "0")
    try:
        t = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    if zone is None or zone in ("Z", "z"):
        return f"{year}-{month}-{day}T{hour or '00'}:{minute or '00'}:{second or '00'}.{millis}Z"
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    try:
        t = t - offset if zone[0] == "+" else t + offset
    except OverflowError:
        return None
    return f"{t.isoformat()}.{millis}Z"


def integer_text(value: Any) -> Any:
    """Numbers and exponent strings ("1e3") -> integer text, as Elastic does for ids and counters.

    Other values come back unchanged (Elastic would fail the whole document on "Yes"; we keep it).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if math.isfinite(value) else value
    if isinstance(value, str) and ("e" in value or "E" in value):
        try:
            d = Decimal(value)
        except InvalidOperation:
            return value
        # The exponent bound keeps "1e999999999" from turning into a gigabyte of digits.
        if d.is_finite() and d.adjusted() < 40 and d == d.to_integral_value():
            return str(int(d))
    return value


def _java_double(d: float) -> str:
    """Java's Double.toString, which is what Elastic's convert-to-string writes for a JSON float."""
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "Infinity" if d > 0 else "-Infinity"
    if d == 0:
        return "-0.0" if math.copysign(1, d) < 0 else "0.0"
    if 1e-3 <= abs(d) < 1e7:
        text = repr(d)
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(d)).as_tuple()
    kept = list(digits)
    while len(kept) > 1 and kept[-1] == 0:
        kept.pop()
        exponent = int(exponent) + 1
    rest = "".join(map(str, kept[1:])) or "0"
    return f"{'-' if sign else ''}{kept[0]}.{rest}E{int(exponent) + len(kept) - 1}"


def keyword_text(value: Any) -> Any:
    """Elastic's `convert: type: string`: scalars become text, lists element-wise, objects untouched."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, list):
        return [keyword_text(v) for v in value]
    return value


def parse_json(text: str) -> tuple[bool, Any]:
    """(ok, value) for a stringly JSON field; not-ok leaves the caller to keep the original text."""
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None
