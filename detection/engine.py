"""A batch of Event Hub bodies × the rules → alerts, plus what happened to every body and record.

The engine is pure: bodies in, values out. Per body it decompresses, asks the prefilter whether any
rule could match (skipping the parse when none can), decodes the records, maps only the records some
rule could match to ECS, and evaluates those rules. Nothing is dropped without a count:

* an alert beyond a rule's `max_signals` in one call goes to `overflow` (the caller decides what that
  means), never away;
* a match of an exception query (the rule's own, or the global EXCEPTIONS_KQL) goes to `excepted`;
* the same record twice in one batch (producers retry) yields its alert once;
* a body, line or record we cannot use is a counted skip with its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from detection.alerts import Alert, build_alert
from detection.ecs import to_ecs
from detection.kql import compile_query
from detection.prefilter import Prefilter
from detection.sources import (
    BodyError,
    Limits,
    Skip,
    SourceRecord,
    decode_json,
    decompress,
    looks_complete,
)

if TYPE_CHECKING:
    from detection.rules.loader import Rule
    from detection.settings import Settings

MAPPING_ERROR = "mapping_error"  # to_ecs raised on a record: a bug to fix, counted, never fatal
RULE_ERROR = "rule_error"  # a predicate raised on a document


@dataclass
class BatchStats:
    """Counts for one call.

    `bodies_prefiltered` bodies were set aside unparsed because no rule can match them, so `records`,
    `records_mapped` and the skips found while decoding cover the `bodies_parsed` ones only. Bodies that
    do not look complete (cut short, empty) are always parsed, so those skips are always counted; a
    body malformed inside that the prefilter sets aside is not looked at (it could not alert either way).
    """

    bodies: int = 0
    records: int = 0
    skips: Counter[str] = field(default_factory=Counter)
    matches: Counter[str] = field(default_factory=Counter)
    overflow: Counter[str] = field(default_factory=Counter)
    excepted: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    bodies_parsed: int = 0
    bodies_prefiltered: int = 0
    records_mapped: int = 0
    skip_list: list[Skip] = field(default_factory=list)

    def add_skips(self, skips: Sequence[Skip]) -> None:
        for skip in skips:
            self.skips[skip.reason] += skip.count
        self.skip_list.extend(skips)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready counts (the skip details stay out: they are for logs, not counters)."""
        return {
            "bodies": self.bodies,
            "bodies_parsed": self.bodies_parsed,
            "bodies_prefiltered": self.bodies_prefiltered,
            "records": self.records,
            "records_mapped": self.records_mapped,
            "skips": dict(sorted(self.skips.items())),
            "matches": dict(sorted(self.matches.items())),
            "overflow": dict(sorted(self.overflow.items())),
            "excepted": dict(sorted(self.excepted.items())),
            "duplicates": self.duplicates,
        }


@dataclass
class Detection:
    alerts: list[Alert] = field(default_factory=list)
    overflow: list[Alert] = field(default_factory=list)
    excepted: list[Alert] = field(default_factory=list)
    stats: BatchStats = field(default_factory=BatchStats)


Predicate = Callable[[dict[str, Any]], bool]


@lru_cache(maxsize=8)
def global_exception(query: str | None) -> Predicate | None:
    """EXCEPTIONS_KQL compiled once per distinct text (settings are immutable)."""
    return compile_query(query) if query else None


_PREFILTERS: dict[tuple[int, ...], tuple[tuple[Any, ...], Prefilter]] = {}


def prefilter_for(rules: Sequence[Rule]) -> Prefilter:
    """The prefilter of a rule set, built once: a batch every second must not re-derive it."""
    key = tuple(id(rule) for rule in rules)
    cached = _PREFILTERS.get(key)
    if cached is None:
        if len(_PREFILTERS) >= 8:
            _PREFILTERS.clear()
        # The rules are kept with their prefilter so their ids cannot be reused by other objects.
        cached = _PREFILTERS[key] = (tuple(rules), Prefilter(rules))
    return cached[1]


def map_record(record: SourceRecord, index: int) -> dict[str, Any] | Skip:
    """The record's ECS document, or the mapping_error skip it costs: a bug in the mapping for one odd
    record must cost that record only, wherever records are mapped (the engine, `normalize`, `match`)."""
    try:
        return to_ecs(record.raw, record.event_time)
    except Exception as exc:
        return Skip(MAPPING_ERROR, f"{type(exc).__name__}: {exc}", index)


class _Batch:
    """The mutable state of one `detect` call."""

    def __init__(self, rules: Sequence[Rule], settings: Settings, use_prefilter: bool) -> None:
        self.rules = tuple(rules)
        self.limits = Limits.from_settings(settings)
        self.prefilter = prefilter_for(self.rules) if use_prefilter else None
        self.global_exception = global_exception(settings.exceptions_kql)
        self.result = Detection()
        self.stats = self.result.stats
        self.seen: set[str] = set()
        self.kept: Counter[str] = Counter()

    def body(self, body: bytes, index: int) -> None:
        stats = self.stats
        stats.bodies += 1
        try:
            data = decompress(body, self.limits)
        except BodyError as exc:
            stats.add_skips([Skip(exc.reason, exc.detail, index)])
            return
        prefilter = self.prefilter
        keep = None
        if prefilter is not None:
            # A body no rule can match is set aside unparsed, unless it looks broken (cut short in
            # transit, say): parsing those costs little, as they are rare, and reports them as skips.
            if not prefilter.body_may_match(data) and looks_complete(data):
                stats.bodies_prefiltered += 1
                return
            keep = prefilter.record_may_match if prefilter.checks_records else None
        stats.bodies_parsed += 1
        decoded = decode_json(data, self.limits, index, keep=keep)
        stats.records += decoded.total
        stats.add_skips(decoded.skips)
        for record in decoded.records:
            rules = prefilter.rules_for(record.raw) if prefilter is not None else self.rules
            if not rules:
                continue
            ecs = map_record(record, index)
            if type(ecs) is Skip:
                stats.add_skips([ecs])
                continue
            stats.records_mapped += 1
            for rule in rules:
                self.evaluate(rule, ecs, record.raw, index)

    def evaluate(self, rule: Rule, ecs: dict[str, Any], raw: dict[str, Any], index: int) -> None:
        try:
            if not rule.predicate(ecs):
                return
            excepted = (self.global_exception is not None and self.global_exception(ecs)) or any(
                check(ecs) for check in rule.exception_predicates)
        except Exception as exc:  # same reasoning as for the mapping
            self.stats.add_skips([Skip(RULE_ERROR, f"{rule.rule_id}: {type(exc).__name__}: {exc}", index)])
            return
        alert = build_alert(rule, ecs, raw)
        if alert.alert_id in self.seen:
            self.stats.duplicates += 1
            return
        self.seen.add(alert.alert_id)
        stats, result = self.stats, self.result
        stats.matches[rule.rule_id] += 1
        if excepted:
            stats.excepted[rule.rule_id] += 1
            result.excepted.append(alert)
        elif self.kept[rule.rule_id] >= rule.max_signals:
            stats.overflow[rule.rule_id] += 1
            result.overflow.append(alert)
        else:
            self.kept[rule.rule_id] += 1
            result.alerts.append(alert)


def detect(
    bodies: Sequence[bytes],
    rules: Sequence[Rule] | Any,
    settings: Settings,
    *,
    prefilter: bool | None = None,
) -> Detection:
    """Evaluate every rule over every record of `bodies`; `prefilter` None follows settings.prefilter.

    `rules` is a sequence of rules or a RuleSet. Alerts come out in body, record and rule order.
    """
    rule_list = getattr(rules, "rules", rules)
    use_prefilter = settings.prefilter if prefilter is None else prefilter
    batch = _Batch(rule_list, settings, use_prefilter)
    for index, body in enumerate(bodies):
        batch.body(body, index)
    return batch.result
