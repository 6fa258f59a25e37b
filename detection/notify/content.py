"""What a notification says, before any chat format: a title, facts, steps and links.

Teams, Slack and the console render the same `Content`, so what an analyst learns from an alert does
not depend on where it arrives, and a new fact is added once. Every string in a `Content` is treated
as untrusted by the renderers (rule names come from rule files, values from audit records); here they
are only cleaned to one line and bounded in length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from detection.alerts import Alert, get_field
from detection.notify.base import (
    AlertMessage,
    DeliveryFailedMessage,
    HealthMessage,
    Message,
    OverflowMessage,
)
from detection.notify.text import clean, truncate
from detection.settings import SEVERITIES

NOT_SET = "—"
# No format shows more than a few thousand characters of one value; bound the work for huge ones.
MAX_VALUE_CHARS = 4000
MAX_HEALTH_FACTS = 20
MAX_STEPS = 8

PURVIEW_AUDIT_SEARCH = "https://purview.microsoft.com/audit/auditsearch"
TEAMS_ADMIN_APPS = "https://admin.teams.microsoft.com/policies/manage-apps"


@dataclass(frozen=True)
class Fact:
    label: str
    value: str


@dataclass(frozen=True)
class Link:
    title: str
    url: str


@dataclass(frozen=True)
class Steps:
    title: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Content:
    kind: str  # "alert" | "overflow" | "delivery_failed" | "health"
    key: str
    title: str
    severity: str | None  # one of SEVERITIES, or None for notices without one
    intro: str | None
    facts: tuple[Fact, ...]
    steps: tuple[Steps, ...]
    links: tuple[Link, ...]
    reference: Fact  # the notice's own id, shown small at the end


class GuideLike(Protocol):
    investigation: Sequence[str]
    response: Sequence[str]


@dataclass(frozen=True)
class _Guide:
    investigation: tuple[str, ...]
    response: tuple[str, ...]


# Used for a rule whose file carries no [guide]: steps that hold for any admin change in a tenant.
DEFAULT_GUIDE = _Guide(
    investigation=(
        "Ask the account owner whether they made this change, and whether it was planned.",
        "Search the audit log for the account's other activity around the event time: sign-ins from "
        "new places, role or MFA changes, app consents.",
        "Compare the source IP with the places this account normally works from.",
    ),
    response=(
        "If nobody planned the change, undo it and find out how the account came to make it.",
        "If the account may be compromised, revoke its sessions and reset its credentials.",
        "If the change is routine for this account, add an exception so it stops alerting.",
    ),
)


def content_for(message: Message, guides: Mapping[str, GuideLike] | None = None) -> Content:
    """The content of any message; `guides` maps rule_id → the rule's investigation/response steps."""
    if isinstance(message, AlertMessage):
        return alert_content(message, guides)
    if isinstance(message, OverflowMessage):
        return overflow_content(message)
    if isinstance(message, DeliveryFailedMessage):
        return delivery_failed_content(message)
    if isinstance(message, HealthMessage):
        return health_content(message)
    raise TypeError(f"not a notification message: {type(message).__name__}")


def alert_content(message: AlertMessage, guides: Mapping[str, GuideLike] | None = None) -> Content:
    alert = message.alert
    # The steps stored with the alert win: a redelivery renders what the rule said when it fired.
    guide: GuideLike = alert if (alert.investigation or alert.response) else (
        (guides or {}).get(alert.rule_id) or DEFAULT_GUIDE)
    facts = [
        Fact("Risk score", _value(alert.risk_score)),
        Fact("Changed by", _value(alert.user_id)),
        Fact("Tenant", _value(alert.tenant_id)),
        Fact("Source IP", _value(alert.source_ip)),
        Fact("Event time", _value(alert.event_time)),
    ]
    setting = get_field(alert.ecs, "o365.audit.Name") if isinstance(alert.ecs, dict) else None
    if isinstance(setting, str) and setting:
        facts.append(Fact("Setting", _value(setting)))
    if alert.old_value is not None or alert.new_value is not None:
        facts.append(Fact("Change", f"{_value(alert.old_value)} → {_value(alert.new_value)}"))
    mitre = _mitre(alert)
    if mitre:
        facts.append(Fact("MITRE ATT&CK", mitre))
    if message.suppressed_count > 0:
        noun = "alert" if message.suppressed_count == 1 else "alerts"
        facts.append(Fact("Suppressed", f"{message.suppressed_count} similar {noun} since the last notice"))
    facts.append(Fact("Record id", _value(alert.record_id)))
    return Content(
        kind="alert",
        key=message.key,
        title=_value(alert.rule_name),
        severity=_severity(alert.severity),
        intro=None,
        facts=tuple(facts),
        steps=_steps(guide),
        links=(
            Link("Search the audit log (Purview)", PURVIEW_AUDIT_SEARCH),
            Link("Teams app settings", TEAMS_ADMIN_APPS),
            *_tactic_links(alert),
        ),
        reference=Fact("Alert id", _value(message.key)),
    )


def overflow_content(message: OverflowMessage) -> Content:
    count = message.count
    return Content(
        kind="overflow",
        key=message.key,
        title=f"{count} more alerts: {_value(message.rule_name)}",
        severity=_severity(message.severity),
        intro="The rule matched more records in one batch than it notifies one by one. Every alert is "
              "stored and listed with status overflow.",
        facts=(
            Fact("Severity", _severity_label(message.severity)),
            Fact("Tenant", _value(message.tenant_id)),
            Fact("Alerts without their own notice", str(count)),
            Fact("First event time", _value(message.first_event_time)),
            Fact("Last event time", _value(message.last_event_time)),
            Fact("Rule id", _value(message.rule_id)),
        ),
        steps=(
            Steps("Investigate", (
                "List the stored alerts of this rule for the tenant and look for one account or one "
                "source IP behind the burst.",
                "Search the audit log over the time range above for the same activity.",
            )),
            Steps("Respond", (
                "If the burst is an expected bulk change, add an exception or a maintenance window.",
            )),
        ),
        links=(Link("Search the audit log (Purview)", PURVIEW_AUDIT_SEARCH),),
        reference=Fact("Notice id", _value(message.key)),
    )


def delivery_failed_content(message: DeliveryFailedMessage) -> Content:
    destination = _value(message.destination)
    subject = message.subject
    if isinstance(subject, OverflowMessage):
        title = f"Overflow summary not delivered to {destination}: {_value(subject.rule_name)}"
        intro = (f"{subject.count} alerts past the rule's max_signals are stored and listed with status "
                 "overflow, but one destination never received their summary.")
        severity, details = subject.severity, (
            Fact("Alerts in the summary", str(subject.count)),
            Fact("Tenant", _value(subject.tenant_id)),
            Fact("First event time", _value(subject.first_event_time)),
            Fact("Last event time", _value(subject.last_event_time)),
            Fact("Rule id", _value(subject.rule_id)),
        )
        first_step = ("List the stored alerts of this rule with status overflow (`alerts list --status "
                      "overflow --rule RULE_ID`): none was lost.")
        not_again = "this summary is not sent there again"
        reference = Fact("Notice id", _value(subject.key))
    else:
        title = f"Alert not delivered to {destination}: {_value(subject.rule_name)}"
        intro = "The alert is stored and listed, but one destination never received it."
        severity, details = subject.severity, (
            Fact("Changed by", _value(subject.user_id)),
            Fact("Tenant", _value(subject.tenant_id)),
            Fact("Event time", _value(subject.event_time)),
            Fact("Rule id", _value(subject.rule_id)),
        )
        first_step = "Read the alert here or in the alert list: it was not lost."
        not_again = "this alert is not sent there again (its status stays failed)"
        reference = Fact("Alert id", _value(subject.alert_id))
    return Content(
        kind="delivery_failed",
        key=message.key,
        title=title,
        severity=_severity(severity),
        intro=intro,
        facts=(
            Fact("Destination", destination),
            Fact("Last error", _value(message.error)),
            Fact("Severity", _severity_label(severity)),
            *details,
        ),
        steps=(
            Steps("Respond", (
                first_step,
                "Check the destination's webhook: a Teams flow stops when its owner leaves, a Slack "
                "webhook stops when its channel is archived or the app is removed.",
                "After fixing it, `python -m detection redeliver` sends what is still owed to it; "
                f"{not_again}, so forward it by hand.",
            )),
        ),
        links=(Link("Search the audit log (Purview)", PURVIEW_AUDIT_SEARCH),),
        reference=reference,
    )


def health_content(message: HealthMessage) -> Content:
    """A generic rendering of a health summary: its title and every other entry as a fact."""
    summary = message.summary if isinstance(message.summary, dict) else {}
    title = summary.get("title")
    facts = [Fact(_value(str(key)), _value(_scalar(value)))
             for key, value in summary.items() if key not in ("title", "severity")]
    if len(facts) > MAX_HEALTH_FACTS:
        hidden = len(facts) - MAX_HEALTH_FACTS + 1
        facts = [*facts[: MAX_HEALTH_FACTS - 1], Fact("More", f"{hidden} more entries not shown")]
    return Content(
        kind="health",
        key=message.key,
        title=_value(title) if isinstance(title, str) and title.strip() else "Detection health",
        severity=_severity(summary.get("severity")),
        intro=None,
        facts=tuple(facts),
        steps=(),
        links=(),
        reference=Fact("Notice id", _value(message.key)),
    )


# ---- helpers ----

def _value(value: object) -> str:
    if value is None:
        return NOT_SET
    text = clean(value)
    return truncate(text, MAX_VALUE_CHARS) if text else NOT_SET


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return str(value)


def _severity(value: object) -> str | None:
    text = str(value).strip().lower() if value is not None else ""
    return text if text in SEVERITIES else None


def _severity_label(value: object) -> str:
    severity = _severity(value)
    return severity.capitalize() if severity else _value(value)


def _steps(guide: GuideLike) -> tuple[Steps, ...]:
    investigation = tuple(_value(s) for s in guide.investigation or DEFAULT_GUIDE.investigation)
    response = tuple(_value(s) for s in guide.response or DEFAULT_GUIDE.response)
    investigation, response = investigation[:MAX_STEPS], response[:MAX_STEPS]
    return (Steps("Investigate", investigation), Steps("Respond", response))


def _mitre(alert: Alert) -> str:
    parts = []
    for entry in alert.threat:
        tactic = entry.get("tactic") if isinstance(entry, dict) else None
        if not isinstance(tactic, dict):
            continue
        text = f"{tactic.get('name') or NOT_SET} ({tactic.get('id') or NOT_SET})"
        techniques = [f"{t.get('id')} {t.get('name') or ''}".strip()
                      for t in entry.get("technique") or () if isinstance(t, dict) and t.get("id")]
        if techniques:
            text += ": " + ", ".join(techniques)
        parts.append(text)
    return _value("; ".join(parts)) if parts else ""


def _tactic_links(alert: Alert) -> list[Link]:
    links = []
    for tactic in alert.tactics:
        url = tactic.get("reference")
        if isinstance(url, str) and _safe_link(url):
            label = truncate(clean(tactic.get("id") or "tactic"), 24)
            links.append(Link(f"MITRE ATT&CK {label}", url))
    return links[:3]


def _safe_link(url: str) -> bool:
    """Rule data may name a link; it becomes a button only when it is a plain https URL."""
    return (url.startswith("https://") and len(url) <= 500
            and not any(c.isspace() or c in '<>|"`' for c in url))
