"""The health summary, and the notices built from it.

One summary serves `python -m detection health` (printed as text or JSON) and the daily heartbeat
(sent to every destination), so a team reads the same numbers wherever it looks. Notices are flat
`{title, severity, <fact>: <text>}` dicts, the shape `HealthMessage` renders as a card or message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from detection.health.checks import DRIFT, SILENCE, Evaluation, Finding, Mark, Transitions, describe
from detection.health.counters import (
    ALERTS,
    DELIVERED,
    DELIVERY_FAILED,
    EXCEPTED,
    OVERFLOW,
    PIPELINE_TENANT,
    RECORDS,
    SKIPPED,
    SUPPRESSED,
    Counters,
    total,
)

TOTALS = (RECORDS, ALERTS, SUPPRESSED, EXCEPTED, OVERFLOW, DELIVERED, DELIVERY_FAILED)
OUTCOMES = TOTALS[1:]  # what came of a tenant's records, shown beside them
# How the text and the heartbeat name each number.
LABELS = {RECORDS: "records", ALERTS: "alerts", SUPPRESSED: "suppressed", EXCEPTED: "excepted",
          OVERFLOW: "overflow", DELIVERED: "delivered", DELIVERY_FAILED: "delivery failures"}
# Most findings one notice lists; the rest are counted ("and 4 more").
MAX_NOTICE_FINDINGS = 12
# Most tenants the heartbeat lists (after its findings, which matter more); `health` lists them all.
MAX_NOTICE_TENANTS = 5


def build_summary(
    period: Mapping[str, Counters],
    *,
    first_day: date,
    last_day: date,
    silence: Evaluation,
    drift: Evaluation,
    now: datetime,
    silence_threshold: timedelta,
    drift_window: timedelta,
) -> dict[str, Any]:
    """Counters of a period of UTC days plus the current findings, as JSON-ready data."""
    overall = total(period)
    skipped = sum(n for name, n in overall.counts.items() if name.startswith(SKIPPED + "."))
    tenants = []
    for tenant, counters in sorted(period.items()):
        if tenant == PIPELINE_TENANT:
            continue
        # The totals add every tenant up, including the pipeline's skips (and, in counters written
        # before outcomes were kept per tenant, the alerts and deliveries counted there).
        tenants.append({
            "tenant_id": tenant,
            **{name: counters.count(name) for name in TOTALS},
            "workloads": {name: seen.count for name, seen in sorted(counters.workloads.items())},
            "families": {name: seen.count for name, seen in sorted(counters.families.items())},
        })
    silent = [f.to_dict() for f in _sorted(silence.findings.values())]
    drifting = [f.to_dict() for f in _sorted(drift.findings.values())]
    attention = []
    if not overall.count(RECORDS):
        attention.append("no records arrived in the period")
    if silent:
        attention.append(_plural(len(silent), "silent source"))
    if drifting:
        attention.append(_plural(len(drifting), "rule that may be blind", "rules that may be blind"))
    if overall.count(DELIVERY_FAILED):
        attention.append(_plural(overall.count(DELIVERY_FAILED), "delivery failure"))
    return {
        "generated_at": now.isoformat(),
        "period": {"from": first_day.isoformat(), "to": last_day.isoformat()},
        "thresholds": {"silence": describe(silence_threshold), "drift_window": describe(drift_window)},
        "status": "attention" if attention else "ok",
        "attention": attention,
        "totals": {**{name: overall.count(name) for name in TOTALS}, "skipped": skipped},
        "skipped": {name.removeprefix(SKIPPED + "."): n for name, n in sorted(overall.counts.items())
                    if name.startswith(SKIPPED + ".")},
        "tenants": tenants,
        "silence": silent,
        "drift": drifting,
    }


def render_text(summary: Mapping[str, Any]) -> str:
    """The summary for a terminal: totals, per-tenant sources, then every finding in full."""
    totals = summary["totals"]
    period = summary["period"]
    lines = [
        f"health: {summary['status']}{_reasons(summary)}  (period {period['from']} .. {period['to']} UTC, "
        f"generated {summary['generated_at']})",
        "  ".join(f"{LABELS[name]} {totals[name]}" for name in TOTALS) + f"  skipped {totals['skipped']}",
    ]
    for tenant in summary["tenants"]:
        workloads = ", ".join(f"{k} {v}" for k, v in tenant["workloads"].items()) or "none"
        lines.append(f"tenant {tenant['tenant_id']}: {tenant['records']} records ({workloads})")
        if any(tenant.get(name) for name in OUTCOMES):
            lines.append("  " + "  ".join(f"{LABELS[name]} {tenant.get(name, 0)}" for name in OUTCOMES))
        if tenant["families"]:
            shapes = ", ".join(f"{k} {v}" for k, v in tenant["families"].items())
            lines.append(f"  Teams admin shapes: {shapes}")
    for title, key in (("silent sources", "silence"), ("rules that may be blind", "drift")):
        items = summary[key]
        lines.append(f"{title}: {len(items) or 'none'}")
        lines.extend(f"  - [{item['tenant_id']}] {item['message']}" for item in items)
    return "\n".join(lines)


def heartbeat_notice(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The daily heartbeat: the summary's numbers and its findings, one fact each."""
    totals = summary["totals"]
    period = summary["period"]
    span = period["from"] if period["from"] == period["to"] else f"{period['from']} .. {period['to']}"
    notice: dict[str, Any] = {
        "title": f"Detection heartbeat for {span} (UTC): {summary['status']}{_reasons(summary)}",
        "severity": "low",
        "Records": str(totals[RECORDS]),
        "Alerts": str(totals[ALERTS]),
        "Suppressed": str(totals[SUPPRESSED]),
        "Delivery failures": str(totals[DELIVERY_FAILED]),
        "Skipped records": str(totals["skipped"]),
        "Silent sources": str(len(summary["silence"])) if summary["silence"] else "none",
        "Rules that may be blind": str(len(summary["drift"])) if summary["drift"] else "none",
    }
    _add_findings(notice, [*summary["silence"], *summary["drift"]])
    _add_tenants(notice, summary["tenants"])
    return notice


def _add_tenants(notice: dict[str, Any], tenants: Sequence[Mapping[str, Any]]) -> None:
    """One line per tenant when there are several (with one, the totals are that tenant's): those with
    delivery failures first, then by alerts, so the ones to look at are shown when the rest are cut."""
    if len(tenants) < 2:
        return
    ranked = sorted(tenants, key=lambda t: (-t.get(DELIVERY_FAILED, 0), -t.get(ALERTS, 0),
                                            -t.get(RECORDS, 0), t["tenant_id"]))
    for i, tenant in enumerate(ranked[:MAX_NOTICE_TENANTS], 1):
        numbers = ", ".join(f"{LABELS[name]} {tenant.get(name, 0)}"
                            for name in (RECORDS, ALERTS, SUPPRESSED, DELIVERED, DELIVERY_FAILED))
        notice[f"Tenant {i}"] = f"[{tenant['tenant_id']}] {numbers}"
    if len(ranked) > MAX_NOTICE_TENANTS:
        notice["More tenants"] = f"{len(ranked) - MAX_NOTICE_TENANTS} more not shown"


def transition_notice(change: Transitions) -> dict[str, Any] | None:
    """One notice for everything that started or ended in one run of the checks (None: nothing did)."""
    if not change.started and not change.ended:
        return None
    silent = [f for f in change.started if f.kind == SILENCE]
    blind = [f for f in change.started if f.kind == DRIFT]
    recovered = [m for m in change.ended if m.kind == SILENCE]
    restored = [m for m in change.ended if m.kind == DRIFT]
    parts = [f"{_plural(len(items), noun)} {verb}" for items, noun, verb in (
        (silent, "source", "silent"), (blind, "rule", "may be blind"), (recovered, "source", "recovered"),
        (restored, "rule input", "seen again")) if items]
    notice: dict[str, Any] = {
        "title": "Detection health: " + ", ".join(parts),
        "severity": "medium" if silent or blind else "low",
    }
    _add_findings(notice, [f.to_dict() for f in (*silent, *blind)])
    ended = [_ended_text(m) for m in (*recovered, *restored)]
    for i, text in enumerate(ended[:MAX_NOTICE_FINDINGS], 1):
        notice[f"Resolved {i}"] = text
    if len(ended) > MAX_NOTICE_FINDINGS:
        notice["Resolved, more"] = f"{len(ended) - MAX_NOTICE_FINDINGS} more not shown"
    if silent or blind:
        notice["What to check"] = (
            "Silent source: is the Event Hub still receiving (the Management Activity subscription or "
            "the Defender stream may have stopped)? Blind rule: does the tenant now log this change in "
            "another shape? Run `python -m detection health` for the full picture.")
    return notice


def _add_findings(notice: dict[str, Any], findings: Sequence[Mapping[str, Any]]) -> None:
    for i, item in enumerate(findings[:MAX_NOTICE_FINDINGS], 1):
        label = "Silent" if item["kind"] == SILENCE else "Blind rule"
        notice[f"{label} {i}"] = f"[{item['tenant_id']}] {item['message']}"
    if len(findings) > MAX_NOTICE_FINDINGS:
        notice["More findings"] = f"{len(findings) - MAX_NOTICE_FINDINGS} more not shown"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _reasons(summary: Mapping[str, Any]) -> str:
    reasons = summary.get("attention") or []
    return f" ({'; '.join(reasons)})" if reasons else ""


def _ended_text(mark: Mark) -> str:
    if mark.kind == SILENCE:
        return f"[{mark.tenant_id}] {mark.subject} records are arriving again."
    return f"[{mark.tenant_id}] the operations the rule \"{mark.subject}\" needs are arriving again."


def _sorted(findings: Sequence[Finding] | Any) -> list[Finding]:
    return sorted(findings, key=lambda f: f.key)
