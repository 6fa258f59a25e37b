"""Which operations and workloads a rule cannot fire without, read from its query tree.

A rule is only as good as its input: Elastic's seed rule can never fire once Microsoft stops emitting
TeamsTenantSettingChanged for the setting it watches. To notice that, the health check needs to know,
for every rule, the `event.action` values one of which every match must carry (and the `event.provider`
values likewise). They are derived from the query itself rather than declared, so they cannot drift
from what the rule actually reads.

The derivation is conservative: a value counts only when every way to satisfy the query passes through
it (an `or` with an unconstrained branch constrains nothing; anything under `not` constrains nothing),
and when several constraints apply we keep all their values, so at worst a rule is reported too late,
never blind when it is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from detection.kql.ast import And, Match, Node, Or, Value, ValueAnd, ValueExpr, ValueNot, ValueOr

ACTION_FIELD = "event.action"
PROVIDER_FIELD = "event.provider"


@dataclass(frozen=True)
class Pattern:
    """One required value as written in the query: exact, or with `*` wildcards."""

    text: str
    segments: tuple[str, ...] | None = None

    def matches(self, value: str) -> bool:
        if self.segments is None:
            return value == self.text
        return _regex(self.segments).fullmatch(value) is not None


@dataclass(frozen=True)
class RuleInputs:
    rule_id: str
    rule_name: str
    actions: tuple[Pattern, ...]    # empty: the query does not pin the operation, nothing to check
    providers: tuple[Pattern, ...]  # empty: any workload can carry the operations


def rule_inputs(rule_id: str, rule_name: str, ast: Node | None) -> RuleInputs:
    if ast is None:
        return RuleInputs(rule_id, rule_name, (), ())
    return RuleInputs(rule_id, rule_name, _sorted(required(ast, ACTION_FIELD)),
                      _sorted(required(ast, PROVIDER_FIELD)))


def inputs_of(rules: Iterable[object]) -> tuple[RuleInputs, ...]:
    """The inputs of loaded rules (anything with rule_id, name and ast, such as detection.rules.Rule)."""
    return tuple(rule_inputs(r.rule_id, r.name, r.ast) for r in rules)  # type: ignore[attr-defined]


def required(node: Node, field_name: str) -> set[Pattern] | None:
    """The values of `field_name` every match must hold one of; None when the query does not pin it."""
    if isinstance(node, Match):
        if node.field.is_wildcard or node.field.name != field_name:
            return None
        return _values(node.value)
    if isinstance(node, And):
        found = [r for r in (required(item, field_name) for item in node.items) if r is not None]
        return set().union(*found) if found else None
    if isinstance(node, Or):
        found = [required(item, field_name) for item in node.items]
        if any(r is None for r in found):
            return None
        return set().union(*found)  # type: ignore[arg-type]
    # Not, Nested, Exists, Range, FreeText, MatchAll: no positive value of the field is required.
    return None


def _values(expr: ValueExpr) -> set[Pattern] | None:
    if isinstance(expr, Value):
        if expr.segments is not None and not any(expr.segments):
            return None  # `field:*` only asks for presence
        return {Pattern(expr.text, expr.segments)}
    if isinstance(expr, ValueOr | ValueAnd):
        found = [_values(item) for item in expr.items]
        if isinstance(expr, ValueOr) and any(r is None for r in found):
            return None
        kept = [r for r in found if r is not None]
        return set().union(*kept) if kept else None
    if isinstance(expr, ValueNot):
        return None
    return None


def _sorted(patterns: set[Pattern] | None) -> tuple[Pattern, ...]:
    return tuple(sorted(patterns or (), key=lambda p: p.text))


_REGEX_CACHE: dict[tuple[str, ...], re.Pattern[str]] = {}


def _regex(segments: tuple[str, ...]) -> re.Pattern[str]:
    pattern = _REGEX_CACHE.get(segments)
    if pattern is None:
        pattern = re.compile(".*".join(re.escape(s) for s in segments), re.DOTALL)
        _REGEX_CACHE[segments] = pattern
    return pattern
