"""The Alert value: what a rule match means, as plain data that every later stage shares.

An alert's id is a pure function of the rule and the record, so the same record redelivered by Event Hub
or re-listed by the Management Activity API yields the same id, and storage can deduplicate on it.
Nothing here knows about storage or chat formats.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from detection.rules.loader import Rule


@dataclass(frozen=True)
class Alert:
    alert_id: str
    rule_id: str
    rule_name: str
    severity: str
    risk_score: int
    threat: tuple[dict[str, Any], ...]
    record_id: str
    event_time: str
    tenant_id: str
    user_id: str | None
    source_ip: str | None
    old_value: str | None
    new_value: str | None
    ecs: dict[str, Any] = field(repr=False)
    raw: dict[str, Any] = field(repr=False)
    # The rule's short investigation and response steps, carried so a stored alert renders the same
    # notification later even if the rule file has changed since.
    investigation: tuple[str, ...] = ()
    response: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data: the `scan` output line and the webhook body."""
        data = asdict(self)
        data["threat"] = list(self.threat)
        data["investigation"] = list(self.investigation)
        data["response"] = list(self.response)
        return data

    @property
    def tactics(self) -> list[dict[str, str]]:
        """MITRE tactics as {id, name, reference}, in rule order."""
        return [t["tactic"] for t in self.threat if isinstance(t.get("tactic"), dict)]


def alert_id_for(rule_id: str, tenant_id: str, record_id: str) -> str:
    """Deterministic id: the same rule over the same record always yields the same alert."""
    digest = hashlib.sha256(f"{rule_id}\x1f{tenant_id}\x1f{record_id}".encode()).hexdigest()
    return digest[:32]


def record_identity(raw: dict[str, Any]) -> str:
    """The record's `Id`; a record without one is identified by a hash of its canonical JSON."""
    rid = raw.get("Id")
    if isinstance(rid, str) and rid:
        return rid
    return "sha256:" + hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()


def get_field(doc: dict[str, Any], dotted: str) -> Any:
    """A value from a nested ECS document by dotted path (None when absent)."""
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0] if value else None
        return _text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def build_alert(rule: Rule, ecs: dict[str, Any], raw: dict[str, Any]) -> Alert:
    """The alert a rule match makes; old/new values come from the fields the rule's [alert] table names."""
    record_id = record_identity(raw)
    tenant_id = _text(get_field(ecs, "organization.id")) or "unknown-tenant"
    spec = rule.alert
    return Alert(
        alert_id=alert_id_for(rule.rule_id, tenant_id, record_id),
        rule_id=rule.rule_id,
        rule_name=rule.name,
        severity=rule.severity,
        risk_score=rule.risk_score,
        threat=rule.threat,
        record_id=record_id,
        event_time=_text(get_field(ecs, "@timestamp")) or "",
        tenant_id=tenant_id,
        user_id=_text(get_field(ecs, "user.id")),
        source_ip=_text(get_field(ecs, "source.ip")),
        old_value=_text(get_field(ecs, spec.old_value_field)),
        new_value=_text(get_field(ecs, spec.new_value_field)),
        ecs=ecs,
        raw=raw,
        investigation=rule.guide.investigation,
        response=rule.guide.response,
    )
