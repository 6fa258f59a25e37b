"""Rule files → validated `Rule` values.

Rules are data in Elastic's detection-rules TOML format (`[metadata]`, `[rule]`, `[[rule.threat]]`), so
one of Elastic's own o365 query rules dropped into the folder runs unmodified. We add tables Elastic's
format does not use, all optional:

    [[tests]]        name, expect = "alert" | "no_alert", record = '''<raw audit record as JSON>'''
    [suppression]    group_by = [ECS fields], window = "60m", missing = "group" | "separate"
    [exceptions]     kql = ["<query>", ...]   records these match make no alert
    [alert]          old_value / new_value = ECS fields shown as the change's before and after
    [guide]          investigation = [...], response = [...]   short steps carried into notifications

A file we cannot use fails loudly with its path and the reason; a well-formed rule of a type we do not
run (eql, esql, threshold, …) is reported by name and skipped, never fatal.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from detection.kql import KqlSyntaxError, compile_query, parse
from detection.kql.ast import Node
from detection.settings import SEVERITIES, parse_duration

RUNNABLE_TYPES = {"query"}
RUNNABLE_LANGUAGES = {"kuery"}
DEFAULT_MAX_SIGNALS = 100
DEFAULT_SUPPRESSION_FIELDS = ("organization.id", "user.id")
DEFAULT_SUPPRESSION_WINDOW = timedelta(minutes=60)


class RuleError(ValueError):
    """A rule file we cannot load; the message starts with the file's path."""


@dataclass(frozen=True)
class RuleTest:
    name: str
    expect_alert: bool
    record: dict[str, Any]


@dataclass(frozen=True)
class Suppression:
    """How alerts of one rule are grouped: by these ECS fields, within a window of event time.

    `missing` says what a record lacking a group-by field does: "group" (the missing value is a value
    like any other) or "separate" (the record is never suppressed).
    """

    group_by: tuple[str, ...] = DEFAULT_SUPPRESSION_FIELDS
    window: timedelta = DEFAULT_SUPPRESSION_WINDOW
    missing: str = "group"


@dataclass(frozen=True)
class AlertSpec:
    old_value_field: str = "o365.audit.OldValue"
    new_value_field: str = "o365.audit.NewValue"


@dataclass(frozen=True)
class Guide:
    investigation: tuple[str, ...] = ()
    response: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    rule_id: str
    name: str
    description: str
    type: str
    language: str
    query: str
    severity: str
    risk_score: int
    interval: str
    from_: str
    max_signals: int
    tags: tuple[str, ...]
    threat: tuple[dict[str, Any], ...]
    note: str
    false_positives: tuple[str, ...]
    references: tuple[str, ...]
    path: Path
    tests: tuple[RuleTest, ...] = ()
    suppression: Suppression = field(default_factory=Suppression)
    exceptions: tuple[str, ...] = ()
    alert: AlertSpec = field(default_factory=AlertSpec)
    guide: Guide = field(default_factory=Guide)
    ast: Node | None = field(default=None, repr=False, compare=False)
    predicate: Callable[[dict[str, Any]], bool] = field(default=lambda doc: False, repr=False, compare=False)
    exception_predicates: tuple[Callable[[dict[str, Any]], bool], ...] = field(
        default=(), repr=False, compare=False)


@dataclass(frozen=True)
class SkippedRule:
    path: Path
    rule_id: str
    name: str
    reason: str


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    skipped: tuple[SkippedRule, ...]


# ---- small validators: each names the key it checks so the error says exactly what is wrong ----

def _require(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    name = f"{where}.{key}" if where else key
    if key not in table:
        raise ValueError(f"{name} is required")
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"{name} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


# Our own tables and their keys. Elastic's tables may grow keys we do not know, but a misspelt key in
# one of ours would otherwise be ignored without a word (a window that silently stays 60m, say).
OUR_TABLE_KEYS = {
    "tests": frozenset({"name", "expect", "record"}),
    "suppression": frozenset({"group_by", "window", "missing"}),
    "exceptions": frozenset({"kql"}),
    "alert": frozenset({"old_value", "new_value"}),
    "guide": frozenset({"investigation", "response"}),
}


def _known_keys(table: dict[str, Any], where: str, kind: str) -> dict[str, Any]:
    unknown = sorted(set(table) - OUR_TABLE_KEYS[kind])
    if unknown:
        allowed = ", ".join(sorted(OUR_TABLE_KEYS[kind]))
        raise ValueError(f"{where} has unknown keys {', '.join(unknown)} (it takes {allowed})")
    return table


def _optional(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
              default: Any) -> Any:
    if key not in table:
        return default
    return _require(table, key, kind, where)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", list: "a list", dict: "a table", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _strings(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = _optional(table, key, list, where, [])
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ValueError(f"{where}.{key}[{i}] must be a string")
    return tuple(values)


def _compile(query: str, where: str) -> tuple[Node, Callable[[dict[str, Any]], bool]]:
    try:
        node = parse(query)
    except KqlSyntaxError as exc:
        raise ValueError(f"{where} is not valid KQL: {exc}") from None
    return node, compile_query(node)


def _mitre_entry(entry: Any, where: str) -> None:
    """A tactic, technique or subtechnique: id, name and reference, all text, as Elastic's schema has it
    (notifications show and link them; one missing would silently vanish from every alert)."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a table")
    for key in ("id", "name", "reference"):
        _require(entry, key, str, where)


def _threat(rule: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    entries = _optional(rule, "threat", list, "rule", [])
    for i, entry in enumerate(entries):
        where = f"rule.threat[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a table")
        _optional(entry, "framework", str, where, "")
        _mitre_entry(_require(entry, "tactic", dict, where), f"{where}.tactic")
        for j, technique in enumerate(_optional(entry, "technique", list, where, [])):
            at = f"{where}.technique[{j}]"
            _mitre_entry(technique, at)
            for k, sub in enumerate(_optional(technique, "subtechnique", list, at, [])):
                _mitre_entry(sub, f"{at}.subtechnique[{k}]")
    return tuple(entries)


def _tests(document: dict[str, Any]) -> tuple[RuleTest, ...]:
    tests = []
    for i, entry in enumerate(_optional(document, "tests", list, "", [])):
        where = f"tests[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a table")
        _known_keys(entry, where, "tests")
        name = _optional(entry, "name", str, where, f"test {i + 1}")
        expect = _require(entry, "expect", str, where)
        if expect not in ("alert", "no_alert"):
            raise ValueError(f"{where}.expect must be \"alert\" or \"no_alert\", got {expect!r}")
        text = _require(entry, "record", str, where)
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{where}.record is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}.record must be a JSON object (one audit record)")
        tests.append(RuleTest(name=name, expect_alert=expect == "alert", record=record))
    return tuple(tests)


def parse_suppression(table: dict[str, Any], where: str) -> Suppression:
    """One suppression spec; shared by rule files and the SUPPRESSION_OVERRIDES setting."""
    group_by = _strings(table, "group_by", where) or DEFAULT_SUPPRESSION_FIELDS
    window_text = _optional(table, "window", str, where, "60m")
    try:
        window = parse_duration(window_text)
    except ValueError as exc:
        raise ValueError(f"{where}.window: {exc}") from None
    missing = _optional(table, "missing", str, where, "group")
    if missing not in ("group", "separate"):
        raise ValueError(f"{where}.missing must be \"group\" or \"separate\", got {missing!r}")
    return Suppression(group_by=group_by, window=window, missing=missing)


def _skip_reason(rule: dict[str, Any], metadata: dict[str, Any]) -> str | None:
    """Why a well-formed rule is not run, or None. Type and language are checked for being text first:
    a typo there is a broken file, not a rule of another kind."""
    rule_type = _require(rule, "type", str, "rule")
    if rule_type not in RUNNABLE_TYPES:
        return f"rule type {rule_type!r} is not run by this engine (only query rules in kuery are)"
    language = _optional(rule, "language", str, "rule", "kuery")
    if language not in RUNNABLE_LANGUAGES:
        return f"query language {language!r} is not run by this engine (only kuery is)"
    if metadata.get("maturity") == "deprecated":
        return "the rule is deprecated"
    return None


def parse_rule(document: dict[str, Any], path: Path) -> Rule | SkippedRule:
    """Validate one parsed rule file. Raises ValueError naming the offending key."""
    metadata = _optional(document, "metadata", dict, "", {})
    rule = _require(document, "rule", dict, "file")
    rule_id = _require(rule, "rule_id", str, "rule")
    name = _require(rule, "name", str, "rule")
    reason = _skip_reason(rule, metadata)
    if reason:
        return SkippedRule(path=path, rule_id=rule_id, name=name, reason=reason)

    severity = _require(rule, "severity", str, "rule")
    if severity not in SEVERITIES:
        raise ValueError(f"rule.severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    risk_score = _require(rule, "risk_score", int, "rule")
    if not 0 <= risk_score <= 100:
        raise ValueError(f"rule.risk_score must be between 0 and 100, got {risk_score}")
    max_signals = _optional(rule, "max_signals", int, "rule", DEFAULT_MAX_SIGNALS)
    if max_signals <= 0:
        raise ValueError(f"rule.max_signals must be greater than 0, got {max_signals}")
    query = _require(rule, "query", str, "rule")
    node, predicate = _compile(query, "rule.query")

    exceptions_table, suppression_table, alert_table, guide_table = (
        _known_keys(_optional(document, kind, dict, "", {}), kind, kind)
        for kind in ("exceptions", "suppression", "alert", "guide"))
    exceptions = _strings(exceptions_table, "kql", "exceptions")
    exception_predicates = tuple(
        _compile(q, f"exceptions.kql[{i}]")[1] for i, q in enumerate(exceptions))

    return Rule(
        rule_id=rule_id,
        name=name,
        description=_require(rule, "description", str, "rule"),
        type=rule["type"],
        language=rule.get("language", "kuery"),
        query=query,
        severity=severity,
        risk_score=risk_score,
        interval=_optional(rule, "interval", str, "rule", "5m"),
        from_=_optional(rule, "from", str, "rule", "now-6m"),
        max_signals=max_signals,
        tags=_strings(rule, "tags", "rule"),
        threat=_threat(rule),
        note=_optional(rule, "note", str, "rule", ""),
        false_positives=_strings(rule, "false_positives", "rule"),
        references=_strings(rule, "references", "rule"),
        path=path,
        tests=_tests(document),
        suppression=parse_suppression(suppression_table, "suppression"),
        exceptions=exceptions,
        alert=AlertSpec(
            old_value_field=_optional(alert_table, "old_value", str, "alert", AlertSpec.old_value_field),
            new_value_field=_optional(alert_table, "new_value", str, "alert", AlertSpec.new_value_field),
        ),
        guide=Guide(
            investigation=_strings(guide_table, "investigation", "guide"),
            response=_strings(guide_table, "response", "guide"),
        ),
        ast=node,
        predicate=predicate,
        exception_predicates=exception_predicates,
    )


def load_rule_file(path: Path) -> Rule | SkippedRule:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_rule(document, path)
    except ValueError as exc:
        raise RuleError(f"{path}: {exc}") from None


def load_rules(folder: Path | str, *, only: Iterable[str] | None = None) -> RuleSet:
    """Every `*.toml` below `folder`, sorted by path so every instance loads the same rule order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RuleError(f"{folder}: rules folder does not exist")
    wanted = set(only) if only is not None else None
    rules: list[Rule] = []
    skipped: list[SkippedRule] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.toml")):
        loaded = load_rule_file(path)
        if wanted is not None and loaded.rule_id not in wanted:
            continue
        if loaded.rule_id in seen:
            raise RuleError(f"{path}: rule_id {loaded.rule_id} is also used by {seen[loaded.rule_id]}")
        seen[loaded.rule_id] = path
        if isinstance(loaded, SkippedRule):
            skipped.append(loaded)
        else:
            rules.append(loaded)
    return RuleSet(rules=tuple(rules), skipped=tuple(skipped))
