"""KQL tree → one predicate over a nested ECS document, built once per query.

The predicate runs on every candidate record, so the tree is turned into nested closures up front:
evaluating a document walks only the fields the query names, allocates nothing, and stops at the
first value that decides the answer.

Semantics follow Elastic's evaluation of a KQL query against indexed documents:

* A field path is read through nested objects *and* literal dotted keys at any level
  (`{"a": {"b": 1}}` and `{"a.b": 1}` both hold `a.b`); arrays, also arrays of objects and arrays
  of arrays, are flattened, so `a.b` over `[{"b": 1}, {"b": 2}]` holds 1 and 2. A field matches when
  any of its values does. A missing field (or a null, or an empty list) holds no values, so `f:x` is
  false and `not f:x` true.
* Values are exact and case-sensitive. Strings compare as strings; a JSON number compares numerically
  with a query value that reads as a number (`5` and `5.0` match 5); a JSON boolean matches `true` /
  `false` only (lower case: `True` is the string "True"). `null` is no special value: it matches the
  string "null" only, since a JSON null is never indexed.
* Value lists distribute over the field like Kibana's translation: `f:(a and not b)` is
  `f:a and not f:b`, so on a multi-valued field `and` means "holds both" and `not` "holds neither".
* `*` in an unquoted value is a wildcard over string values only, anchored at both ends; a value made
  only of stars is `exists`. `f:*` holds when the field has a non-null value (an object counts when
  any of its leaves does).
* `field:{query}` holds when one element of `field` satisfies the whole inner query, whose field names
  are relative to the element.
* Ranges compare numbers numerically (also numeric strings, which is how an ECS document often carries
  a number Elastic indexes as one), ISO-8601 dates as instants (no zone = UTC), other strings
  lexically; booleans and objects never satisfy a range.
* Free text holds when any leaf value anywhere in the document matches; a wildcard field name such as
  `o365.audit.*` reads every leaf whose dotted path matches the pattern.
"""

# Explicit loops instead of any()/all() over generators: a generator per call is an allocation on the
# hot path, and this module exists to avoid those.
# ruff: noqa: SIM110

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .ast import (
    And,
    Exists,
    Field,
    FreeText,
    Match,
    MatchAll,
    Nested,
    Node,
    Not,
    Or,
    Range,
    Value,
    ValueAnd,
    ValueExpr,
    ValueNot,
    ValueOr,
)
from .parser import parse

Predicate = Callable[[Mapping[str, Any]], bool]
Test = Callable[[Any], bool]  # one leaf value → matches?
Reader = Callable[[Test], Predicate]  # "does any value of this field pass the test?"

_BOOLEANS = {"true": True, "false": False}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)(?:\.(\d+))?(.*)", re.DOTALL)
_RANGE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compile_query(query: str | Node) -> Predicate:
    """Compile a KQL query (text or parsed tree) into `predicate(ecs_doc) -> bool`."""
    node = parse(query) if isinstance(query, str) else query
    return _compile(node)


def _compile(node: Node) -> Predicate:
    if isinstance(node, Match):
        return _compile_values(node.value, _field_reader(node.field))
    if isinstance(node, And):
        return _all(_compile(item) for item in node.items)
    if isinstance(node, Or):
        return _any(_compile(item) for item in node.items)
    if isinstance(node, Not):
        return _negate(_compile(node.item))
    if isinstance(node, Exists):
        return _field_reader(node.field)(_exists)
    if isinstance(node, Range):
        return _field_reader(node.field)(_range_test(node.op, node.value))
    if isinstance(node, Nested):
        inner = _compile(node.query)
        return _field_reader(node.field)(lambda element: isinstance(element, dict) and inner(element))
    if isinstance(node, FreeText):
        return _compile_values(node.value, _any_leaf_reader)
    if isinstance(node, MatchAll):
        return _always
    raise TypeError(f"not a KQL query node: {node!r}")


# -- boolean structure -------------------------------------------------------------------------------


def _always(_doc: Mapping[str, Any]) -> bool:
    return True


def _negate(predicate: Predicate) -> Predicate:
    return lambda doc: not predicate(doc)


def _all(predicates: Iterable[Predicate]) -> Predicate:
    preds = tuple(predicates)
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds
        return lambda doc: first(doc) and second(doc)

    def every(doc: Mapping[str, Any]) -> bool:
        for predicate in preds:
            if not predicate(doc):
                return False
        return True

    return every


def _any(predicates: Iterable[Predicate]) -> Predicate:
    preds = tuple(predicates)
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds
        return lambda doc: first(doc) or second(doc)

    def some(doc: Mapping[str, Any]) -> bool:
        for predicate in preds:
            if predicate(doc):
                return True
        return False

    return some


def _compile_values(expr: ValueExpr, reader: Reader) -> Predicate:
    """A value expression against one field; plain alternatives share a single pass over the values."""
    if isinstance(expr, Value):
        return reader(_values_test((expr,)))
    if isinstance(expr, ValueOr):
        plain = [item for item in expr.items if isinstance(item, Value)]
        rest = [_compile_values(item, reader) for item in expr.items if not isinstance(item, Value)]
        return _any(([reader(_values_test(plain))] if plain else []) + rest)
    if isinstance(expr, ValueAnd):
        return _all(_compile_values(item, reader) for item in expr.items)
    if isinstance(expr, ValueNot):
        return _negate(_compile_values(expr.item, reader))
    raise TypeError(f"not a KQL value: {expr!r}")


# -- reading field values ----------------------------------------------------------------------------


def _field_reader(field: Field) -> Reader:
    if field.segments is None:
        parts = tuple(field.name.split("."))
        return lambda test: _path_reader(parts, test)
    if not any(field.segments):
        return _any_leaf_reader
    pattern = _wildcard_regex(field.segments)
    return lambda test: _pattern_reader(pattern, test)


def _path_reader(parts: Sequence[str], test: Test) -> Predicate:
    """Chain one step per path part; each step also tries the remaining parts joined as one dotted key."""

    if isinstance(test, _Equals):  # the common case: one string, compared inline without a call
        text = test.text

        def leaf(obj: Any) -> bool:
            return obj == text or (isinstance(obj, list) and _some(obj, leaf))

    else:

        def leaf(obj: Any) -> bool:
            return _some(obj, leaf) if isinstance(obj, list) else test(obj)

    steps: dict[int, Callable[[Any], bool]] = {len(parts): leaf}
    for start in reversed(range(len(parts))):
        options = tuple((".".join(parts[start:end]), steps[end]) for end in range(start + 1, len(parts) + 1))
        steps[start] = _step(options)
    return steps[0]


def _step(options: tuple[tuple[str, Callable[[Any], bool]], ...]) -> Callable[[Any], bool]:
    if len(options) == 1:
        ((key, then),) = options

        def single(obj: Any) -> bool:
            if isinstance(obj, dict):
                value = obj.get(key)
                return value is not None and then(value)
            return isinstance(obj, list) and _some(obj, single)

        return single

    def several(obj: Any) -> bool:
        if isinstance(obj, dict):
            for key, then in options:
                value = obj.get(key)
                if value is not None and then(value):
                    return True
            return False
        return isinstance(obj, list) and _some(obj, several)

    return several


def _some(items: list[Any], check: Callable[[Any], bool]) -> bool:
    """Arrays are flattened: a check holds for an array when it holds for one of its items."""
    for item in items:
        if check(item):
            return True
    return False


def _any_leaf(obj: Any, test: Test) -> bool:
    if isinstance(obj, dict):
        for value in obj.values():
            if _any_leaf(value, test):
                return True
        return False
    if isinstance(obj, list):
        for item in obj:
            if _any_leaf(item, test):
                return True
        return False
    return test(obj)


def _any_leaf_reader(test: Test) -> Predicate:
    return lambda doc: _any_leaf(doc, test)


def _pattern_reader(pattern: re.Pattern[str], test: Test) -> Predicate:
    """Leaves whose full dotted path matches a wildcard field name (`o365.audit.*`)."""

    def walk(obj: Any, path: str) -> bool:
        if isinstance(obj, dict):
            for key, value in obj.items():
                if walk(value, f"{path}.{key}" if path else str(key)):
                    return True
            return False
        if isinstance(obj, list):
            for item in obj:
                if walk(item, path):
                    return True
            return False
        return pattern.fullmatch(path) is not None and test(obj)

    return lambda doc: walk(doc, "")


# -- testing one value -------------------------------------------------------------------------------


def _exists(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return _any_leaf(value, _is_not_none)
    return True


def _is_not_none(value: Any) -> bool:
    return value is not None


def _values_test(values: Sequence[Value]) -> Test:
    """One test for "equals any of these values", by the JSON type of the document's value."""
    if any(value.segments is not None and not any(value.segments) for value in values):
        return _exists
    texts = frozenset(value.text for value in values if value.segments is None)
    wildcards = tuple(_wildcard_matcher(value.segments) for value in values if value.segments is not None)
    numbers = frozenset(n for n in (_parse_number(t) for t in texts) if n is not None)
    flags = frozenset(_BOOLEANS[t] for t in texts if t in _BOOLEANS)

    if not wildcards and not numbers and not flags:
        if len(texts) == 1:
            (text,) = texts
            return _Equals(text)
        return lambda value: isinstance(value, str) and value in texts
    if not wildcards and len(texts) == 1 and not flags:
        (text,) = texts
        (number,) = numbers

        def text_or_number(value: Any) -> bool:
            if isinstance(value, str):
                return value == text
            return _is_number(value) and value == number

        return text_or_number

    def typed(value: Any) -> bool:
        if isinstance(value, str):
            if value in texts:
                return True
            for matches in wildcards:
                if matches(value):
                    return True
            return False
        if isinstance(value, bool):  # before numbers: True == 1 in Python, not in Elastic
            return value in flags
        if isinstance(value, int | float):
            return value in numbers
        return False

    return typed


class _Equals:
    """Equality with one string (never equal to a non-string); readers recognise it and inline it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, value: Any) -> bool:
        return value == self.text


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_number(text: str) -> int | float | None:
    """A query value read as a number; strict, so "5_0", " 5" or "nan" are not numbers."""
    if not _NUMBER.fullmatch(text):
        return None
    if _INTEGER.fullmatch(text):
        return int(text)
    number = float(text)
    return number if math.isfinite(number) else None


def _parse_date(text: str) -> datetime | None:
    """An ISO-8601 date or timestamp as an aware instant; fractions beyond microseconds are cut."""
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    head, fraction, zone = match.groups()
    if zone in ("Z", "z"):
        zone = "+00:00"
    candidate = head + (f".{fraction[:6].ljust(6, '0')}" if fraction else "") + zone
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _range_test(op: str, value: Value) -> Test:
    compare = _RANGE_OPS[op]
    text = value.text
    number = _parse_number(text)
    moment = _parse_date(text)

    def in_range(candidate: Any) -> bool:
        if isinstance(candidate, bool):
            return False
        if isinstance(candidate, int | float):
            return number is not None and compare(candidate, number)
        if not isinstance(candidate, str):
            return False
        if number is not None:
            as_number = _parse_number(candidate)
            if as_number is not None:
                return compare(as_number, number)
        if moment is not None:
            as_moment = _parse_date(candidate)
            if as_moment is not None:
                return compare(as_moment, moment)
        return compare(candidate, text)

    return in_range


def _wildcard_regex(segments: Sequence[str]) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(segment) for segment in segments), re.DOTALL)


def _wildcard_matcher(segments: Sequence[str]) -> Callable[[str], bool]:
    """Anchored `*` matching; the common shapes avoid the regex engine."""
    first, *middle, last = segments
    if not middle:
        if not first:
            return (lambda s: True) if not last else (lambda s: s.endswith(last))
        if not last:
            return lambda s: s.startswith(first)
        size = len(first) + len(last)
        return lambda s: len(s) >= size and s.startswith(first) and s.endswith(last)
    if len(middle) == 1 and not first and not last:
        (needle,) = middle
        return lambda s: needle in s
    pattern = _wildcard_regex(segments)
    return lambda s: pattern.fullmatch(s) is not None
