"""Test data for notifications: alerts, hostile values, every kind of message, a fake clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from detection.alerts import Alert
from detection.notify.base import AlertMessage, DeliveryFailedMessage, HealthMessage, OverflowMessage

SEED_THREAT = ({
    "framework": "MITRE ATT&CK",
    "tactic": {"id": "TA0003", "name": "Persistence", "reference": "https://attack.mitre.org/tactics/TA0003/"},
},)

# Strings that would ping, link, format or hide text if a format passed them through.
INJECTIONS = [
    "<!channel>",
    "<!here|here> <@U024BE7LH>",
    "<https://evil.example/login|Click to verify>",
    "[verify your account](https://evil.example/login)",
    "**urgent** _now_ ~gone~ `code`",
    "<at>Global Admin</at>",
    "# heading\n- list item\n1. numbered",
    "&lt;!channel&gt; & < >",
    "{{DATE(2017-02-14T06:08:39Z, SHORT)}}",
    "x\u202egnp.exe",
    "\x1b[31mred\x1b[0m\r\nsecond line",
]


def make_alert(**changes: Any) -> Alert:
    alert = Alert(
        alert_id="106dc8f4e31e160b3e5e18bfcae0e4f1",
        rule_id="bbd1a775-8267-41fa-9232-20e5582596ac",
        rule_name="Microsoft 365 Teams Custom Application Interaction Allowed",
        severity="medium",
        risk_score=47,
        threat=SEED_THREAT,
        record_id="0f4a6e1c-2d7b-4a53-9a1e-6c3d2b8e9f10",
        event_time="2026-11-30T14:02:11.000Z",
        tenant_id="4b2c9e11-7d3a-4f0e-9c55-1a2b3c4d5e6f",
        user_id="admin@contoso.onmicrosoft.com",
        source_ip="203.0.113.24",
        old_value="False",
        new_value="True",
        ecs={"o365": {"audit": {"Name": "Allow sideloading and interaction of custom apps"}}},
        raw={"Id": "0f4a6e1c-2d7b-4a53-9a1e-6c3d2b8e9f10", "Operation": "TeamsTenantSettingChanged"},
    )
    return dataclasses.replace(alert, **changes)


def huge_alert() -> Alert:
    return make_alert(
        rule_name="R" * 5000,
        user_id="u" * 100_000 + "@contoso.com",
        source_ip="2001:db8::" + "f" * 5000,
        old_value="é" * 200_000,
        new_value="😀" * 300_000,
        record_id="r" * 10_000,
        tenant_id="t" * 10_000,
        ecs={"o365": {"audit": {"Name": "N" * 50_000}}},
    )


def injected_alert(payload: str) -> Alert:
    return make_alert(rule_name=f"Rule {payload}", user_id=payload, source_ip=payload, old_value=payload,
                      new_value=payload, tenant_id=payload, ecs={"o365": {"audit": {"Name": payload}}})


def overflow_message(**changes: Any) -> OverflowMessage:
    message = OverflowMessage(rule_id="bbd1a775-8267-41fa-9232-20e5582596ac",
                              rule_name="Microsoft 365 Teams Custom Application Interaction Allowed",
                              severity="medium", tenant_id="4b2c9e11", count=250,
                              first_event_time="2026-11-30T14:00:00Z", last_event_time="2026-11-30T14:04:59Z")
    return dataclasses.replace(message, **changes)


def health_summary(entries: int = 3) -> dict[str, Any]:
    summary: dict[str, Any] = {"title": "Detection health", "severity": "high"}
    summary.update({f"workload {i}": {"status": "silent", "last_seen": "2026-11-29T10:00:00Z"}
                    for i in range(entries)})
    return summary


def all_messages() -> Iterator[tuple[str, Any]]:
    """(name, message) for every kind, including hostile and huge values."""
    yield "alert", AlertMessage(make_alert())
    yield "alert-suppressed", AlertMessage(make_alert(severity="high"), suppressed_count=12)
    yield "alert-missing-values", AlertMessage(make_alert(user_id=None, source_ip=None, old_value=None,
                                                          new_value=None, threat=(), ecs={}))
    for severity in ("low", "critical", "unknown"):
        yield f"alert-{severity}", AlertMessage(make_alert(severity=severity))
    for i, payload in enumerate(INJECTIONS):
        yield f"injection-{i}", AlertMessage(injected_alert(payload), suppressed_count=1)
    yield "huge", AlertMessage(huge_alert(), suppressed_count=10**9)
    yield "overflow", overflow_message()
    yield "delivery-failed", DeliveryFailedMessage(make_alert(), "slack",
                                                   "HTTP 410 from hooks.slack.com: channel_is_archived")
    yield "delivery-failed-huge", DeliveryFailedMessage(huge_alert(), "teams", "x" * 100_000)
    yield "delivery-failed-overflow", DeliveryFailedMessage(
        overflow_message(), "slack", "HTTP 410 from hooks.slack.com: channel_is_archived")
    yield "delivery-failed-overflow-hostile", DeliveryFailedMessage(
        overflow_message(rule_name="Rule " + " ".join(INJECTIONS), tenant_id="t" * 10_000,
                         rule_id="r" * 10_000, first_event_time=INJECTIONS[2]), "teams", "x" * 100_000)
    yield "health", HealthMessage(health_summary())
    yield "health-huge", HealthMessage(health_summary(500) | {"note": "n" * 100_000})
    yield "health-empty", HealthMessage({})


class FakeTime:
    """A clock that only moves when slept on, recording every sleep."""

    def __init__(self, start: datetime = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
