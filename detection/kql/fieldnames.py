"""The field names a query reads, for checks that a rule's inputs still exist in the data."""

from __future__ import annotations

from .ast import And, Exists, Match, Nested, Node, Not, Or, Range
from .parser import parse


def fields(query: str | Node) -> set[str]:
    """Dotted field names as written (wildcard names such as `o365.audit.*` included verbatim).

    Inside `field:{…}` the inner names are reported with the outer field as prefix, since that is the
    path read in the document. Free text reads no particular field and adds nothing.
    """
    node = parse(query) if isinstance(query, str) else query
    found: set[str] = set()
    _collect(node, "", found)
    return found


def _collect(node: Node, prefix: str, found: set[str]) -> None:
    if isinstance(node, Match | Exists | Range):
        found.add(prefix + node.field.name)
    elif isinstance(node, Nested):
        _collect(node.query, f"{prefix}{node.field.name}.", found)
    elif isinstance(node, And | Or):
        for item in node.items:
            _collect(item, prefix, found)
    elif isinstance(node, Not):
        _collect(node.item, prefix, found)
    # FreeText reads every field and MatchAll none: neither names a field.
