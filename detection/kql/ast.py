"""The KQL syntax tree: plain frozen values the parser produces and the compiler and prefilter read.

Kept separate from the grammar so that consumers (the predicate compiler, the engine's prefilter)
depend on the shape of a query, not on how it was parsed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Value:
    """One value as written in the query, escapes resolved.

    `text` is the value with escapes removed (for a wildcard: its segments joined by `*`). `quoted`
    values are never wildcards. For an unquoted value containing unescaped `*`, `segments` holds the
    literal pieces between the stars (so `a*b*` is ("a", "b", "")); for any other value `segments` is
    None. `keyword` marks unquoted true/false/null (lower case only: `True` is an ordinary string).
    """

    text: str
    quoted: bool = False
    segments: tuple[str, ...] | None = None
    keyword: bool = False

    @property
    def is_wildcard(self) -> bool:
        return self.segments is not None


@dataclass(frozen=True)
class ValueOr:
    items: tuple[ValueExpr, ...]


@dataclass(frozen=True)
class ValueAnd:
    items: tuple[ValueExpr, ...]


@dataclass(frozen=True)
class ValueNot:
    item: ValueExpr


ValueExpr = Value | ValueOr | ValueAnd | ValueNot


@dataclass(frozen=True)
class Field:
    """A field name; `segments` is set when the name has unescaped `*` (e.g. `o365.audit.*`)."""

    name: str
    segments: tuple[str, ...] | None = None

    @property
    def is_wildcard(self) -> bool:
        return self.segments is not None


@dataclass(frozen=True)
class Match:
    """`field:value` or `field:(v1 or v2 and not v3)`."""

    field: Field
    value: ValueExpr


@dataclass(frozen=True)
class Exists:
    """`field:*`."""

    field: Field


@dataclass(frozen=True)
class Range:
    """`field < value`, with op one of < <= > >=."""

    field: Field
    op: str
    value: Value


@dataclass(frozen=True)
class Nested:
    """`field:{query}`: every condition of `query` holds on the same element of `field`."""

    field: Field
    query: Node


@dataclass(frozen=True)
class FreeText:
    """A value with no field: matches when any field holds it."""

    value: ValueExpr


@dataclass(frozen=True)
class MatchAll:
    """An empty query, `*` or `*:*`."""


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Match | Exists | Range | Nested | FreeText | MatchAll | And | Or | Not
