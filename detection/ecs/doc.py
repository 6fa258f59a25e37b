"""Small building blocks for the nested ECS document, shared by the mapping steps."""

from __future__ import annotations

from typing import Any

from detection.ecs.values import keyword_text

_CONTAINERS = (dict, list)


def clone(value: Any) -> Any:
    """Copy containers so a document never shares a mutable part with the raw record."""
    if value.__class__ is dict:
        return {k: clone(v) if v.__class__ in _CONTAINERS else v for k, v in value.items()}
    if value.__class__ is list:
        return [clone(v) if v.__class__ in _CONTAINERS else v for v in value]
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def copy_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of the record that the mapping may rewrite freely (containers copied, scalars shared)."""
    out = dict(raw)
    for key, value in out.items():
        if value.__class__ not in _SCALARS:
            out[key] = clone(value)
    return out


def sub(node: dict[str, Any], key: str) -> dict[str, Any]:
    """node[key] as a dict, created on first use (a non-dict there is replaced, as Elastic would)."""
    child = node.get(key)
    if child.__class__ is not dict:
        child = node[key] = {}
    return child


def text(value: Any) -> Any:
    """A scalar as the text Elastic's templates render for related.*/email.* lists; containers -> None."""
    if value.__class__ is str:
        return value
    return keyword_text(value) if not isinstance(value, dict | list) else None


def append_unique(doc: dict[str, Any], group: str, key: str, value: Any) -> None:
    """Append a rendered scalar to doc[group][key] once (empty and missing values are skipped)."""
    value = text(value)
    if value:
        values = sub(doc, group).setdefault(key, [])
        if value not in values:
            values.append(value)


def extend_unique(doc: dict[str, Any], group: str, key: str, candidates: list[Any]) -> None:
    """append_unique for several values at once (one lookup of the target list)."""
    values = None
    for value in candidates:
        value = text(value)
        if value:
            if values is None:
                values = sub(doc, group).setdefault(key, [])
            if value not in values:
                values.append(value)


def move(a: dict[str, Any], key: str, node: dict[str, Any], target: str) -> None:
    """Elastic's rename: a present (non-null) value leaves the record for node[target]."""
    if a.get(key) is not None:
        node[target] = a.pop(key)


def nonempty(value: Any) -> bool:
    """Elastic's `ignore_empty_value`: null and "" count as absent."""
    return value is not None and value != ""
