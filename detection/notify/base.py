"""What a notification is, what sending one can lead to, and the delivery every webhook shares.

The state layer keeps a per-destination ledger and an outbox that retries owed notifications; it needs
each send to end in one of four plain outcomes, never an exception, and never with a webhook URL in the
text it stores (the URL is the credential). `HttpDestination` gives Teams, Slack and the generic webhook
one delivery path: explicit timeouts, a few quick retries with backoff and jitter for transient
failures, Retry-After on 429, permanent failure on the answers that mean "this URL will never work", and
client-side pacing so a burst of alerts does not get the destination to throttle us.
"""

from __future__ import annotations

import hashlib
import logging
import random as _random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from detection.alerts import Alert
from detection.notify.text import clean, truncate
from detection.settings import SEVERITIES
from detection.settings import _https_url as _validate_webhook_url  # the one URL policy, shared

if TYPE_CHECKING:
    from detection.settings import Settings

log = logging.getLogger(__name__)

Status = Literal["delivered", "accepted", "retry", "failed"]
Clock = Callable[[], datetime]
Sleep = Callable[[float], None]

USER_AGENT = "m365-detect"
# Quick retries inside one send; anything longer is the outbox's job, so a batch is never held up long.
MAX_ATTEMPTS = 3
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
MAX_INLINE_WAIT = 10.0
# 4xx answers worth asking again; every other 4xx will not change (bad payload, forbidden, no such
# channel, archived channel, revoked flow) and fails the destination for that alert at once.
RETRY_STATUSES = frozenset({408, 425, 429})
# Redelivery schedule of the outbox: 1 m, 2 m, 4 m, … up to an hour between attempts.
REDELIVERY_BASE = timedelta(minutes=1)
REDELIVERY_CAP = timedelta(hours=1)


# ---- messages ----

def _digest(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


@dataclass(frozen=True)
class AlertMessage:
    """One alert, with how many similar alerts were suppressed into it since the last notice."""

    alert: Alert
    suppressed_count: int = 0

    @property
    def key(self) -> str:
        return self.alert.alert_id


@dataclass(frozen=True)
class OverflowMessage:
    """A rule matched more records in one batch than its max_signals: one notice for the rest."""

    rule_id: str
    rule_name: str
    severity: str
    tenant_id: str
    count: int
    first_event_time: str
    last_event_time: str

    @property
    def key(self) -> str:
        return "overflow-" + _digest(self.rule_id, self.tenant_id, self.count,
                                     self.first_event_time, self.last_event_time)


@dataclass(frozen=True)
class DeliveryFailedMessage:
    """A notification one destination never received, sent to the others so somebody still sees it.

    The subject is what went undelivered: an alert, or the overflow summary standing in for the
    alerts past a rule's max_signals (losing that one silently would hide all of them at once)."""

    subject: Alert | OverflowMessage
    destination: str
    error: str

    @property
    def alert(self) -> Alert | None:
        return self.subject if isinstance(self.subject, Alert) else None

    @property
    def overflow(self) -> OverflowMessage | None:
        return self.subject if isinstance(self.subject, OverflowMessage) else None

    @property
    def key(self) -> str:
        subject = self.subject.alert_id if isinstance(self.subject, Alert) else self.subject.key
        return f"{subject}-undelivered-{self.destination}"


@dataclass(frozen=True)
class HealthMessage:
    """A health summary (silence, drift, delivery failures); rendered as a title and facts."""

    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return "health-" + _digest(self.summary)


Message = AlertMessage | OverflowMessage | DeliveryFailedMessage | HealthMessage


@dataclass(frozen=True)
class Outcome:
    """How one send ended. `error` names the host at most, never the URL; `retry_after` is seconds."""

    status: Status
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def done(self) -> bool:
        """Nothing more is owed: delivered (confirmed) or accepted (taken, not proof of posting)."""
        return self.status in ("delivered", "accepted")


# ---- scheduling helpers shared with the outbox ----

def next_attempt_delay(attempts: int, *, retry_after: float | None = None,
                       random: Callable[[], float] | None = None) -> timedelta:
    """How long the outbox waits before attempt `attempts + 1`: doubling from a minute, capped at an hour.

    `random` (returning [0, 1)) spreads retries of many alerts by ±20 % so they do not arrive together;
    a destination's own Retry-After is never undercut.
    """
    exponent = min(max(attempts, 1) - 1, 16)
    delay = min(REDELIVERY_BASE * (2 ** exponent), REDELIVERY_CAP)
    if random is not None:
        delay = min(delay * (0.8 + 0.4 * random()), REDELIVERY_CAP)
    if retry_after is not None and retry_after > delay.total_seconds():
        delay = timedelta(seconds=retry_after)
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from `now`: either delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def host_of(url: str) -> str:
    """What may be shown of a webhook URL: its host (the path and query are the secret)."""
    try:
        return urlsplit(url).hostname or "unknown-host"
    except ValueError:
        return "unknown-host"


def system_clock() -> datetime:
    return datetime.now(UTC)


# ---- destinations ----

class Destination(ABC):
    """Somewhere notifications go. `send` never raises: every ending is an `Outcome`."""

    name: ClassVar[str]

    def __init__(self, *, min_severity: str = "low") -> None:
        if min_severity not in SEVERITIES:
            raise ValueError(f"min_severity must be one of {', '.join(SEVERITIES)}, got {min_severity!r}")
        self.min_severity = min_severity

    def accepts(self, message: Message) -> bool:
        """Alerts below the destination's minimum severity are not sent; every other notice is.

        An alert whose severity we do not know is sent rather than silently dropped.
        """
        if not isinstance(message, AlertMessage):
            return True
        severity = message.alert.severity.lower()
        if severity not in SEVERITIES:
            return True
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)

    @abstractmethod
    def send(self, message: Message) -> Outcome:
        """Deliver `message` now, with the destination's own bounded retries."""

    def close(self) -> None:  # noqa: B027 - most destinations hold nothing to release
        """Release connections; the destination must not be used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class _Pacer:
    """At most one request per `interval` seconds, shared by all threads using one destination, and
    none while a pause the destination asked for (Retry-After) lasts: the pause is about the webhook,
    not the one message that got it, so the next alert of a burst must respect it too."""

    def __init__(self, interval: float, clock: Clock, sleep: Sleep) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot: datetime | None = None
        self._held_until: datetime | None = None

    def hold(self, seconds: float) -> None:
        with self._lock:
            until = self._clock() + timedelta(seconds=seconds)
            if self._held_until is None or until > self._held_until:
                self._held_until = until

    def held_for(self) -> float:
        """Seconds left of the pause the destination asked for; 0 when there is none."""
        with self._lock:
            if self._held_until is None:
                return 0.0
            return max(0.0, (self._held_until - self._clock()).total_seconds())

    def wait(self) -> float:
        if self.interval <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            wait = 0.0
            if self._next_slot is not None and now < self._next_slot:
                # Bounded by the interval, so a clock that jumps back cannot stall us.
                wait = min((self._next_slot - now).total_seconds(), self.interval)
            self._next_slot = now + timedelta(seconds=wait + self.interval)
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass(frozen=True)
class Request:
    """What a destination posts: the exact body bytes and its headers."""

    body: bytes
    headers: Mapping[str, str]


class HttpDestination(Destination):
    """A webhook: render a message to a request, post it, and classify the answer."""

    min_interval: ClassVar[float] = 0.0

    def __init__(
        self,
        url: str,
        *,
        min_severity: str = "low",
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        random: Callable[[], float] | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        min_interval: float | None = None,
    ) -> None:
        super().__init__(min_severity=min_severity)
        if not url:
            raise ValueError(f"{self.name}: no webhook URL")
        try:
            _validate_webhook_url(url)
        except ValueError as exc:
            raise ValueError(f"{self.name} webhook URL {exc}") from None
        self._url = url
        self.host = host_of(url)
        self._timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout,
                                      pool=connect_timeout)
        self._transport = transport
        self._sleep = sleep or time.sleep
        self._clock = clock or system_clock
        self._random = random or _random.random
        self.max_attempts = max(1, max_attempts)
        interval = self.min_interval if min_interval is None else min_interval
        self._pacer = _Pacer(interval, self._clock, self._sleep)
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @abstractmethod
    def render(self, message: Message) -> Request:
        """The request for `message` (pure: no I/O)."""

    def success(self, response: httpx.Response) -> Outcome:
        """A 2xx answer. Destinations that only queue the message override this to say `accepted`."""
        return Outcome("delivered", response.status_code)

    def send(self, message: Message) -> Outcome:
        try:
            request = self.render(message)
        except Exception as exc:  # a message we cannot render will not render on a retry either
            log.exception("%s: could not build the message for %s", self.name, self.host)
            return Outcome("failed", None, f"could not build the message: {type(exc).__name__}")
        outcome = Outcome("retry", None, "not attempted")
        made = 0
        for attempt in range(1, self.max_attempts + 1):
            held = self._pacer.held_for()
            if held > MAX_INLINE_WAIT:
                outcome = Outcome("retry", None, f"{self.host} asked for a pause (Retry-After), "
                                                 f"{held:.0f}s left: not sent", held)
                break  # the outbox comes back after the pause
            if held > 0:
                self._sleep(held)
            self._pacer.wait()
            outcome = self._attempt(request)
            made = attempt
            if outcome.retry_after is not None:
                self._pacer.hold(outcome.retry_after)
            if outcome.status != "retry":
                break
            if attempt == self.max_attempts:
                break
            delay = outcome.retry_after if outcome.retry_after is not None else self._backoff(attempt)
            if delay > MAX_INLINE_WAIT:
                break  # the outbox waits that long, not this call
            log.info("%s: attempt %d to %s: %s; retrying in %.1fs",
                     self.name, attempt, self.host, outcome.error, delay)
            self._sleep(delay)
        if outcome.status == "failed":
            log.warning("%s: permanent delivery failure to %s: %s", self.name, self.host, outcome.error)
        elif outcome.status == "retry" and made:
            log.warning("%s: delivery to %s still failing after %d attempts: %s",
                        self.name, self.host, made, outcome.error)
        elif outcome.status == "retry":
            log.info("%s: %s", self.name, outcome.error)
        return outcome

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # ---- internals ----

    def _backoff(self, attempt: int) -> float:
        delay = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** (attempt - 1)))
        return delay * (0.5 + 0.5 * self._random())

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                # Never follow redirects: the body would go to a host nobody configured.
                self._client = httpx.Client(timeout=self._timeout, transport=self._transport,
                                            follow_redirects=False, headers={"User-Agent": USER_AGENT})
            return self._client

    def _attempt(self, request: Request) -> Outcome:
        try:
            response = self._http().post(self._url, content=request.body, headers=dict(request.headers))
        except httpx.TimeoutException as exc:
            return Outcome("retry", None, f"timed out talking to {self.host} ({_kind(exc)})")
        except httpx.TransportError as exc:
            return Outcome("retry", None, f"network error talking to {self.host} ({_kind(exc)})")
        except httpx.HTTPError as exc:  # e.g. an answer whose body cannot be decoded
            return Outcome("retry", None, f"bad answer from {self.host} ({_kind(exc)})")
        return self._classify(response)

    def _classify(self, response: httpx.Response) -> Outcome:
        code = response.status_code
        if 200 <= code < 300:
            return self.success(response)
        error = self._describe(response)
        if code in RETRY_STATUSES or code >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
            return Outcome("retry", code, error, retry_after)
        if 300 <= code < 400:
            return Outcome("failed", code, f"HTTP {code} redirect from {self.host}: not followed; "
                                           "check the webhook URL")
        if 400 <= code < 500:
            return Outcome("failed", code, error)
        return Outcome("retry", code, error)

    def _describe(self, response: httpx.Response) -> str:
        """`HTTP 410 from host: channel_is_archived`, with anything URL-like in the answer removed."""
        text = f"HTTP {response.status_code} from {self.host}"
        try:
            body = response.text
        except (UnicodeDecodeError, LookupError):
            body = ""
        body = truncate(clean(self._scrub(body)), 200)
        return f"{text}: {body}" if body else text

    def _scrub(self, text: str) -> str:
        for secret in _secret_parts(self._url):
            text = text.replace(secret, "…")
        return text


def _secret_parts(url: str) -> tuple[str, ...]:
    """Every piece of a webhook URL that can be its credential, longest first: the URL, its path and
    query, each query value (`sig=`, `token=`) and each token-like path segment (a Slack webhook's
    secret is its last segment), also percent-decoded. A receiver's error body may echo any one of
    them, and that body goes into the ledger and into the delivery-failed notice other channels see."""
    parts = urlsplit(url)
    found = {url, parts.path, parts.query}
    found.update(pair.partition("=")[2] for pair in parts.query.split("&"))
    found.update(segment for segment in parts.path.split("/") if len(segment) >= 8 and not segment.isalpha())
    found |= {unquote(piece) for piece in found}
    return tuple(sorted((piece for piece in found if len(piece) >= 4), key=len, reverse=True))


def _kind(exc: Exception) -> str:
    """The exception's class name only: httpx messages may quote the URL."""
    return type(exc).__name__


# ---- keep webhook URLs out of httpx's own request log ----

class _RedactUrls(logging.Filter):
    """httpx logs every request with its full URL at INFO; keep the scheme and host only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _redact(value) for key, value in record.args.items()}
        if isinstance(record.msg, (str, httpx.URL)) and "://" in str(record.msg):
            record.msg = _redact_text(str(record.msg))
        return True


def _redact(value: Any) -> Any:
    if isinstance(value, httpx.URL):
        return f"{value.scheme}://{value.host}/…"
    if isinstance(value, str) and "://" in value:
        return _redact_text(value)
    return value


_URL_IN_TEXT = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s\"']+)[^\s\"']*")


def _redact_text(text: str) -> str:
    return _URL_IN_TEXT.sub(r"\1/…", text)


for _name in ("httpx", "httpcore"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _RedactUrls) for f in _logger.filters):
        _logger.addFilter(_RedactUrls())


# ---- the configured set ----

def destinations_from_settings(
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Sleep | None = None,
    clock: Clock | None = None,
    guides: Mapping[str, Any] | None = None,
    console_stream: Any = None,
) -> list[Destination]:
    """Teams, Slack and the generic webhook as configured; the console when none is.

    `guides` maps rule_id → the rule's guide (investigation and response steps) for the chat formats.
    """
    from detection.notify.console import ConsoleDestination
    from detection.notify.slack import SlackDestination
    from detection.notify.teams import TeamsDestination
    from detection.notify.webhook import WebhookDestination

    http = {"connect_timeout": settings.http_connect_timeout, "read_timeout": settings.http_read_timeout,
            "transport": transport, "sleep": sleep, "clock": clock}
    destinations: list[Destination] = []
    if settings.teams_webhook_url:
        destinations.append(TeamsDestination(settings.teams_webhook_url, guides=guides,
                                             min_severity=settings.teams_min_severity, **http))
    if settings.slack_webhook_url:
        destinations.append(SlackDestination(settings.slack_webhook_url, guides=guides,
                                             min_severity=settings.slack_min_severity, **http))
    if settings.webhook_url:
        destinations.append(WebhookDestination(settings.webhook_url, secret=settings.webhook_secret,
                                               min_severity=settings.webhook_min_severity, **http))
    if not destinations:
        destinations.append(ConsoleDestination(stream=console_stream, guides=guides))
    return destinations
