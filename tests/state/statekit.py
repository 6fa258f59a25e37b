"""Audit records, rules and destinations for the alert-state tests.

The destinations are small real implementations of our own `Destination` interface: one records what it
was sent and answers as told, one posts to a real local HTTP server. Table Storage itself is always the
real service (Azurite).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from detection.alerts import Alert, alert_id_for
from detection.notify.base import AlertMessage, Destination, Message, Outcome
from detection.rules import load_rules
from detection.rules.loader import Rule
from detection.settings import BUNDLED_RULES_DIR, Settings

TENANT = "4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f"
SEED_RULE_ID = "bbd1a775-8267-41fa-9232-20e5582596ac"
T0 = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)  # a window edge for 60-minute buckets


def seed_rule(**changes: Any) -> Rule:
    rule = next(r for r in load_rules(BUNDLED_RULES_DIR).rules if r.rule_id == SEED_RULE_ID)
    return dataclasses.replace(rule, **changes) if changes else rule


def record(record_id: str, *, user: str = "admin@contoso.onmicrosoft.com", at: datetime = T0,
           tenant: str = TENANT, ip: str = "203.0.113.24", **extra: Any) -> dict[str, Any]:
    """A raw audit record the seed rule matches."""
    return {"CreationTime": at.strftime("%Y-%m-%dT%H:%M:%S"), "Id": record_id,
            "Operation": "TeamsTenantSettingChanged", "OrganizationId": tenant, "RecordType": 25,
            "UserType": 2, "Version": 1, "Workload": "MicrosoftTeams", "UserId": user, "ClientIP": ip,
            "Name": "Allow sideloading and interaction of custom apps", "OldValue": "False",
            "NewValue": "True", **extra}


def body(records: Iterable[dict[str, Any]]) -> bytes:
    return orjson.dumps(list(records))


def settings(env: dict[str, str], **extra: str) -> Settings:
    return Settings.from_env({**env, **extra})


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Recorder(Destination):
    """Keeps every message; answers with `answer(message)` (delivered unless told otherwise)."""

    def __init__(self, name: str, *, answer: Callable[[Message], Outcome] | None = None,
                 min_severity: str = "low") -> None:
        super().__init__(min_severity=min_severity)
        self.name = name  # type: ignore[misc]
        self.answer = answer or (lambda message: Outcome("delivered", 200))
        self.sent: list[Message] = []
        self._lock = threading.Lock()

    def send(self, message: Message) -> Outcome:
        with self._lock:
            self.sent.append(message)
        return self.answer(message)

    def alert_ids(self) -> list[str]:
        return [m.alert.alert_id for m in self.sent if isinstance(m, AlertMessage)]

    def of_type(self, kind: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]


def make_alert(record_id: str, *, user: str | None = "admin@contoso.onmicrosoft.com", at: datetime = T0,
               tenant: str = TENANT, rule_id: str = SEED_RULE_ID, severity: str = "medium",
               raw: dict[str, Any] | None = None) -> Alert:
    """An alert as the engine builds it, without running the engine (for the state layer alone)."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    ecs: dict[str, Any] = {"@timestamp": stamp, "organization": {"id": tenant},
                           "event": {"id": record_id, "action": "TeamsTenantSettingChanged"}}
    if user is not None:
        ecs["user"] = {"id": user}
    return Alert(alert_id=alert_id_for(rule_id, tenant, record_id), rule_id=rule_id,
                 rule_name="Microsoft 365 Teams Custom Application Interaction Allowed", severity=severity,
                 risk_score=47, threat=({"framework": "MITRE ATT&CK", "tactic": {"id": "TA0003"}},),
                 record_id=record_id, event_time=stamp, tenant_id=tenant, user_id=user,
                 source_ip="203.0.113.24", old_value="False", new_value="True", ecs=ecs,
                 raw=raw if raw is not None else record(record_id, user=user or "", at=at, tenant=tenant))
