"""The health checks: pure functions over a counters snapshot, the time, and the thresholds.

Two questions a security team cannot answer from alerts alone:

* **Source silence** — did a workload that was sending records stop? A dead pipeline and a quiet
  tenant look the same in an alert channel; only the counters tell them apart.
* **Rule-input drift** — is a rule waiting for an operation that no longer arrives while its workload
  keeps sending? That is how Elastic's Teams rules went blind when Microsoft started logging admin
  changes as TeamsAdminAction.

Each check returns the conditions that hold now (`Finding`s) and the keys it could judge at all.
`transitions` compares them with the conditions already notified (`Mark`s, persisted by the caller)
so every condition is notified once when it starts and once when it ends, however often the checks run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from detection.health.aggregate import ADMIN_CHANGE_FAMILIES, family_of
from detection.health.counters import OTHER, PIPELINE_TENANT, Counters, to_iso
from detection.health.inputs import RuleInputs

SILENCE = "silence"
DRIFT = "drift"


@dataclass(frozen=True)
class Finding:
    """A condition that holds now. `key` identifies it across runs (tenant + workload, tenant + rule)."""

    kind: str
    key: str
    tenant_id: str
    subject: str            # the workload, or the rule's name
    message: str
    last_seen: datetime | None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tenant_id": self.tenant_id, "subject": self.subject,
                "message": self.message, "last_seen": to_iso(self.last_seen), **self.details}


@dataclass(frozen=True)
class Evaluation:
    findings: dict[str, Finding]
    evaluated: frozenset[str]   # keys the check could judge (a finding's absence means "fine")


@dataclass(frozen=True)
class Mark:
    """A condition that was notified as started and not yet as ended."""

    kind: str
    key: str
    tenant_id: str
    subject: str
    last_seen: datetime | None
    notified_at: datetime


@dataclass(frozen=True)
class Transitions:
    started: tuple[Finding, ...]
    ended: tuple[Mark, ...]
    marks: dict[str, Mark]


def describe(span: timedelta) -> str:
    """`30 days`, `26 hours`, `45 minutes`: the largest whole unit, as people say it."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def _real_tenants(snapshot: Mapping[str, Counters]) -> Iterable[tuple[str, Counters]]:
    for tenant, counters in sorted(snapshot.items()):
        if tenant not in (PIPELINE_TENANT, OTHER):
            yield tenant, counters


def check_silence(snapshot: Mapping[str, Counters], now: datetime, threshold: timedelta) -> Evaluation:
    """Workloads that were active and have sent nothing for longer than `threshold`.

    "Active" means records arrived over a span at least as long as the threshold itself: a workload
    seen once, or only in one short burst, has no rhythm to fall silent from.
    """
    findings: dict[str, Finding] = {}
    evaluated: set[str] = set()
    for tenant, counters in _real_tenants(snapshot):
        for workload, seen in sorted(counters.workloads.items()):
            if workload == OTHER or seen.last is None or seen.since is None:
                continue
            if seen.last - seen.since < threshold:
                continue
            key = f"{SILENCE}|{tenant}|{workload}"
            evaluated.add(key)
            quiet = now - seen.last
            if quiet > threshold:
                findings[key] = Finding(
                    SILENCE, key, tenant, workload,
                    f"No {workload} records have arrived for {describe(quiet)} (threshold "
                    f"{describe(threshold)}); the last arrived at {to_iso(seen.last)}.",
                    seen.last, {"quiet_for": describe(quiet)})
    return Evaluation(findings, frozenset(evaluated))


def check_drift(snapshot: Mapping[str, Counters], inputs: Iterable[RuleInputs], now: datetime,
                window: timedelta) -> Evaluation:
    """Rules whose required operations were not seen for `window` while their workload was active.

    Judged only where the evidence is complete: the workload sent records throughout the window (we
    were watching it from before the window started and it is still sending) and every required
    operation has been looked for since before the window started.
    """
    start = now - window
    findings: dict[str, Finding] = {}
    evaluated: set[str] = set()
    rules = [i for i in inputs if i.actions]
    for tenant, counters in _real_tenants(snapshot):
        for rule in rules:
            active = sorted(
                name for name, seen in counters.workloads.items()
                if (not rule.providers or any(p.matches(name) for p in rule.providers))
                and seen.since is not None and seen.since <= start
                and seen.last is not None and seen.last >= start)
            if not active:
                continue
            ops = [counters.operations.get(p.text) for p in rule.actions]
            if any(o is not None and o.last is not None and o.last >= start for o in ops):
                evaluated.add(f"{DRIFT}|{tenant}|{rule.rule_id}")
                continue
            if any(o is None or o.since is None or o.since > start for o in ops):
                continue
            key = f"{DRIFT}|{tenant}|{rule.rule_id}"
            evaluated.add(key)
            lasts = [o.last for o in ops if o is not None and o.last is not None]
            last = max(lasts) if lasts else None
            findings[key] = _drift_finding(key, tenant, rule, counters, active, last, start, window)
    return Evaluation(findings, frozenset(evaluated))


def _drift_finding(key: str, tenant: str, rule: RuleInputs, counters: Counters, active: list[str],
                   last: datetime | None, start: datetime, window: timedelta) -> Finding:
    needed = [p.text for p in rule.actions]
    own_families = {family_of(p.text) for p in rule.actions if p.segments is None}
    evidence: list[str] = []
    if own_families & set(ADMIN_CHANGE_FAMILIES):
        evidence = [name for name in ADMIN_CHANGE_FAMILIES
                    if name not in own_families and (seen := counters.families.get(name)) is not None
                    and seen.last is not None and seen.last >= start]
    ops = " / ".join(needed)
    if last is None:
        seen_text = f"has not been seen in {describe(window)} of watching"
    else:
        seen_text = f"has not been seen for {describe(window)} (last arrived {to_iso(last)})"
    if evidence:
        lead = f"Teams admin changes are arriving as {', '.join(evidence)}, but {ops} {seen_text}"
    else:
        lead = f"{', '.join(active)} records are arriving, but {ops} {seen_text}"
    message = f"{lead}: the rule \"{rule.rule_name}\" may be blind."
    return Finding(DRIFT, key, tenant, rule.rule_name, message, last, {
        "rule_id": rule.rule_id, "operations": needed, "workloads": active,
        "arriving_instead": evidence, "likely_cause": "input moved" if evidence else "input not seen"})


def transitions(evaluations: Iterable[Evaluation], marks: Mapping[str, Mark], now: datetime,
                *, forget_after: timedelta) -> Transitions:
    """Which conditions start and end now, and the marks to persist.

    A mark ends only when its key was judged and found fine. A key that cannot be judged any more
    (its workload went quiet, its counters expired) keeps its mark, so the condition is not notified a
    second time if it comes back; marks older than `forget_after` are dropped.
    """
    findings: dict[str, Finding] = {}
    evaluated: set[str] = set()
    for evaluation in evaluations:
        findings.update(evaluation.findings)
        evaluated |= evaluation.evaluated
    started = tuple(f for key, f in sorted(findings.items()) if key not in marks)
    ended = tuple(m for key, m in sorted(marks.items()) if key in evaluated and key not in findings)
    kept = {key: m for key, m in marks.items()
            if key in findings or (key not in evaluated and now - m.notified_at <= forget_after)}
    for f in started:
        kept[f.key] = Mark(f.kind, f.key, f.tenant_id, f.subject, f.last_seen, now)
    return Transitions(started, ended, kept)
