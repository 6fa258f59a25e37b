"""A chat webhook (Teams, Slack): renders the shared content of a message into its own JSON format."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import orjson

from detection.notify.base import HttpDestination, Message, Request
from detection.notify.content import Content, GuideLike, content_for


class ChatDestination(HttpDestination):
    """`guides` maps rule_id → the rule's investigation and response steps shown in the message."""

    build_payload: ClassVar[Callable[[Content], dict[str, Any]]]

    def __init__(self, url: str, *, guides: Mapping[str, GuideLike] | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        self.guides = guides

    def payload(self, message: Message) -> dict[str, Any]:
        return type(self).build_payload(content_for(message, self.guides))

    def render(self, message: Message) -> Request:
        return Request(orjson.dumps(self.payload(message)), {"Content-Type": "application/json"})
