"""The generic webhook: the message as JSON for SOAR tools, signed, with an idempotency key.

The body is the alert itself (rule, values, ECS document and raw record), not a chat rendering, so a
playbook can act on fields. With WEBHOOK_SECRET set, `X-Signature-256: sha256=<hex>` is the HMAC-SHA256
of the exact body bytes; the receiver recomputes it over the bytes it got. `Idempotency-Key` is the
alert id (for other notices a key derived from them), so a receiver can drop our redeliveries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Any

import orjson

from detection.notify.base import (
    AlertMessage,
    DeliveryFailedMessage,
    HealthMessage,
    HttpDestination,
    Message,
    OverflowMessage,
    Request,
)

SIGNATURE_HEADER = "X-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Event-Type"
FORMAT_VERSION = 1


_TYPES: dict[type, str] = {AlertMessage: "alert", OverflowMessage: "overflow",
                           DeliveryFailedMessage: "delivery_failed", HealthMessage: "health"}


def document_type(message: Message) -> str:
    try:
        return _TYPES[type(message)]
    except KeyError:
        raise TypeError(f"not a notification message: {type(message).__name__}") from None


def document(message: Message) -> dict[str, Any]:
    """The JSON document for `message`: `type`, `version`, `id` and the message's own fields."""
    doc: dict[str, Any] = {"type": document_type(message), "version": FORMAT_VERSION, "id": message.key}
    if isinstance(message, AlertMessage):
        doc.update(suppressed_count=message.suppressed_count, alert=message.alert.to_dict())
    elif isinstance(message, OverflowMessage):
        doc.update(dataclasses.asdict(message))
    elif isinstance(message, DeliveryFailedMessage):
        doc.update(destination=message.destination, error=message.error)
        subject = message.subject
        if isinstance(subject, OverflowMessage):
            doc.update(overflow=dataclasses.asdict(subject))
        else:
            doc.update(alert=subject.to_dict())
    else:
        doc.update(summary=message.summary)
    return doc


def body_bytes(message: Message) -> bytes:
    return orjson.dumps(document(message), default=str, option=orjson.OPT_NON_STR_KEYS)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDestination(HttpDestination):
    name = "webhook"
    min_interval = 0.1

    def __init__(self, url: str, *, secret: str | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        self._secret = secret or None

    def render(self, message: Message) -> Request:
        body = body_bytes(message)
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: message.key,
                   EVENT_HEADER: document_type(message)}
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        return Request(body, headers)
