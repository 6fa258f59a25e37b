"""Notifications: Teams (Adaptive Card via Workflows), Slack (Block Kit), a signed JSON webhook, and the
console when none is configured. `base` holds the message types, outcomes and the shared delivery."""

from detection.notify.base import (
    AlertMessage,
    DeliveryFailedMessage,
    Destination,
    HealthMessage,
    HttpDestination,
    Message,
    Outcome,
    OverflowMessage,
    destinations_from_settings,
    next_attempt_delay,
)

__all__ = [
    "AlertMessage",
    "DeliveryFailedMessage",
    "Destination",
    "HealthMessage",
    "HttpDestination",
    "Message",
    "Outcome",
    "OverflowMessage",
    "destinations_from_settings",
    "next_attempt_delay",
]
