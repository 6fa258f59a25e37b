"""Dead letters: the bodies of a batch that failed every retry, kept in a blob so nothing is lost.

The Functions host checkpoints an Event Hub batch once its retry policy is exhausted, whether or not
the function succeeded. Before that happens the function writes the batch here, one JSON blob per
batch, and `python -m detection deadletter replay` later runs it through the same handler. The blob
name comes from the batch's partition and sequence-number range, so writing the same batch twice
(an instance that died between retries) overwrites one blob instead of making two.

The format and the naming are pure functions; `DeadLetterStore` is the thin adapter over one blob
container.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson

from detection.settings import Settings, SettingsError

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT_VERSION = 1
ERROR_LIMIT = 2000  # characters of the failure kept with the batch


class DeadLetterError(Exception):
    """A dead-letter blob we cannot read, or a container we cannot reach; the message says which."""


class DeadLetterUnavailable(DeadLetterError):
    """The blob service could not be reached or refused the request. The message is ours alone: the
    SDK's text can quote the request URL, which carries the signature of a SAS connection string."""


@dataclass(frozen=True)
class BatchOrigin:
    """Where a batch sits in the Event Hub: what an operator needs to find it again."""

    partition_id: str | None = None
    first_sequence: int | None = None
    last_sequence: int | None = None
    first_offset: str | None = None
    last_offset: str | None = None
    first_enqueued: str | None = None
    last_enqueued: str | None = None
    event_hub: str | None = None
    consumer_group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchOrigin:
        known = {name: data.get(name) for name in cls.__dataclass_fields__}
        return cls(**known)

    def describe(self) -> str:
        """`partition 3, sequence numbers 120-183, offsets 4096-9120` (what is known of it)."""
        parts = [f"partition {self.partition_id if self.partition_id is not None else 'unknown'}"]
        if self.first_sequence is not None:
            parts.append(f"sequence numbers {self.first_sequence}-{self.last_sequence}")
        if self.first_offset is not None:
            parts.append(f"offsets {self.first_offset}-{self.last_offset}")
        if self.first_enqueued is not None:
            parts.append(f"enqueued {self.first_enqueued} to {self.last_enqueued}")
        return ", ".join(parts)


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered batch as read back."""

    name: str
    bodies: list[bytes]
    origin: BatchOrigin
    error: str
    failed_at: str
    attempts: int | None


@dataclass(frozen=True)
class DeadLetterInfo:
    """A listing entry: enough to choose what to replay without downloading it."""

    name: str
    size: int
    last_modified: str | None


# ---- the format (pure) ----

def blob_name(bodies: Sequence[bytes], origin: BatchOrigin) -> str:
    """Deterministic per batch: partition and sequence range when known, else the bodies' digest."""
    if origin.partition_id is not None and origin.first_sequence is not None:
        first, last = origin.first_sequence, origin.last_sequence
        return f"partition-{origin.partition_id}/{first:020d}-{last:020d}.json"
    digest = hashlib.sha256()
    for body in bodies:
        digest.update(len(body).to_bytes(8, "big"))
        digest.update(body)
    return f"unknown-partition/{digest.hexdigest()[:40]}.json"


def encode(bodies: Sequence[bytes], origin: BatchOrigin, *, error: str, failed_at: datetime,
           attempts: int | None) -> bytes:
    """One JSON document: bodies as base64 (they are arbitrary bytes, gzip included)."""
    document = {
        "format": "m365-detect.deadletter",
        "version": FORMAT_VERSION,
        "failed_at": failed_at.isoformat(),
        "attempts": attempts,
        "error": error[:ERROR_LIMIT],
        "origin": origin.to_dict(),
        "bodies": [base64.b64encode(body).decode("ascii") for body in bodies],
    }
    return orjson.dumps(document)


def decode(name: str, data: bytes) -> DeadLetter:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DeadLetterError(f"{name}: not a dead-letter document: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != "m365-detect.deadletter":
        raise DeadLetterError(f"{name}: not a dead-letter document")
    if document.get("version") != FORMAT_VERSION:
        raise DeadLetterError(f"{name}: unsupported dead-letter version {document.get('version')!r}")
    raw_bodies = document.get("bodies")
    if not isinstance(raw_bodies, list):
        raise DeadLetterError(f"{name}: 'bodies' must be a list")
    try:
        bodies = [base64.b64decode(body, validate=True) for body in raw_bodies]
    except (ValueError, TypeError) as exc:
        raise DeadLetterError(f"{name}: a body is not valid base64: {exc}") from None
    origin = document.get("origin") if isinstance(document.get("origin"), dict) else {}
    return DeadLetter(name=name, bodies=bodies, origin=BatchOrigin.from_dict(origin),
                      error=str(document.get("error") or ""), failed_at=str(document.get("failed_at") or ""),
                      attempts=document.get("attempts"))


# ---- the adapter ----

@dataclass(frozen=True)
class BlobLocation:
    """Which blob service holds the dead letters; `describe()` is safe to log (no keys)."""

    kind: str  # "endpoint" (managed identity) or "connection_string"
    value: str
    source: str

    def describe(self) -> str:
        if self.kind == "endpoint":
            return f"{self.value} (managed identity, from {self.source})"
        parts = dict(p.split("=", 1) for p in self.value.split(";") if "=" in p)
        host = parts.get("BlobEndpoint") or parts.get("AccountName") or "development storage"
        return f"{host} (connection string from {self.source})"


def resolve_location(settings: Settings) -> BlobLocation:
    """The host's storage account holds the dead-letter container (the Bicep creates it there):
    its identity-based blob endpoint, else its connection string, else an alert-state connection
    string that names a blob endpoint (Azurite), else the account name."""
    if settings.azure_webjobs_storage_blob_uri:
        return BlobLocation("endpoint", settings.azure_webjobs_storage_blob_uri.strip(),
                            "AzureWebJobsStorage__blobServiceUri")
    if settings.azure_webjobs_storage:
        return BlobLocation("connection_string", settings.azure_webjobs_storage, "AzureWebJobsStorage")
    connection = settings.alerts_storage_connection
    if connection and _names_blob_service(connection):
        return BlobLocation("connection_string", connection, "ALERTS_STORAGE_CONNECTION")
    if settings.azure_webjobs_storage_account:
        return BlobLocation("endpoint", f"https://{settings.azure_webjobs_storage_account}.blob.core.windows.net",
                            "AzureWebJobsStorage__accountName")
    raise SettingsError("dead letters: set AzureWebJobsStorage__blobServiceUri (with a managed identity) or "
                        "AzureWebJobsStorage (a connection string, e.g. UseDevelopmentStorage=true)")


def _names_blob_service(connection: str) -> bool:
    """A connection string with explicit endpoints but no BlobEndpoint would send blob calls to a
    derived public host; only use one that names the blob service (or the development shortcut)."""
    keys = {p.split("=", 1)[0].strip().lower() for p in connection.split(";") if "=" in p}
    return "blobendpoint" in keys or "usedevelopmentstorage" in keys or (
        "accountname" in keys and not keys & {"tableendpoint", "queueendpoint", "fileendpoint"})


class DeadLetterStore:
    """One blob container of dead-lettered batches."""

    def __init__(self, container: Any, *, location: str = "") -> None:
        self._container = container
        self.location = location

    @classmethod
    def open(cls, settings: Settings, *, credential: Any = None) -> DeadLetterStore:
        from azure.storage.blob import BlobServiceClient, ExponentialRetry

        location = resolve_location(settings)
        # The SDK's default policy retries for minutes; a dead letter is written by an invocation
        # that is already failing, so it gets a few quick tries and then the log line takes over.
        options = {"retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
                   "connection_timeout": 10, "read_timeout": 60}
        if location.kind == "endpoint":
            if credential is None:
                from detection.state.tables import default_credential

                credential = default_credential(settings)
            service = BlobServiceClient(account_url=location.value, credential=credential, **options)
        else:
            service = BlobServiceClient.from_connection_string(location.value, **options)
        container = service.get_container_client(settings.deadletter_container)
        return cls(container, location=f"{location.describe()}, container {settings.deadletter_container}")

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one blob request; "not found" and "exists" pass through for the caller to decide on,
        any other failure leaves as DeadLetterUnavailable without the SDK's text or cause."""
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ResourceExistsError,
            ResourceNotFoundError,
        )

        try:
            return fn()
        except (ResourceNotFoundError, ResourceExistsError):
            raise
        except ClientAuthenticationError as exc:
            reason = "no credential was accepted" if exc.status_code is None else f"HTTP {exc.status_code}"
            raise DeadLetterUnavailable(f"blob storage at {self.location} refused {operation}: {reason} "
                                        "(check the identity and its Storage Blob Data role)") from None
        except HttpResponseError as exc:
            code = getattr(exc, "error_code", None)
            raise DeadLetterUnavailable(
                f"blob storage at {self.location} refused {operation}: HTTP {exc.status_code} "
                f"{getattr(code, 'value', code) or type(exc).__name__}") from None
        except AzureError as exc:
            raise DeadLetterUnavailable(f"blob storage at {self.location} unavailable: {operation} failed "
                                        f"({type(exc).__name__})") from None

    def write(self, bodies: Sequence[bytes], origin: BatchOrigin, *, error: str, failed_at: datetime,
              attempts: int | None) -> str:
        """Store the batch; returns the blob name. Creates the container when it is missing."""
        from azure.core.exceptions import ResourceNotFoundError

        name = blob_name(bodies, origin)
        data = encode(bodies, origin, error=error, failed_at=failed_at, attempts=attempts)
        blob = self._container.get_blob_client(name)
        upload = lambda: blob.upload_blob(data, overwrite=True, content_type="application/json")  # noqa: E731
        try:
            self._call("write", upload)
        except ResourceNotFoundError:
            self._create_container()
            self._call("write", upload)
        return name

    def _create_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self._call("create the container", self._container.create_container)

    def list(self, prefix: str | None = None) -> Iterator[DeadLetterInfo]:
        from azure.core.exceptions import ResourceNotFoundError

        pages = self._container.list_blobs(name_starts_with=prefix)
        try:
            while (item := self._call("list", lambda: next(pages, None))) is not None:
                modified = item.last_modified.isoformat() if item.last_modified else None
                yield DeadLetterInfo(name=item.name, size=int(item.size or 0), last_modified=modified)
        except ResourceNotFoundError:
            return  # no container yet: nothing was ever dead-lettered

    def read(self, name: str) -> DeadLetter:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data = self._call("read", lambda: self._container.get_blob_client(name).download_blob().readall())
        except ResourceNotFoundError:
            raise DeadLetterError(f"{name}: no such dead letter") from None
        return decode(name, data)

    def delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self._call("delete", self._container.get_blob_client(name).delete_blob)


def write_best_effort(open_store: Callable[[], DeadLetterStore], bodies: Sequence[bytes], origin: BatchOrigin,
                      *, error: str, failed_at: datetime, attempts: int | None) -> str | None:
    """Dead-letter a failed batch without ever raising: the caller is already failing, and its own
    log line (with the origin) is the fallback record when this write fails too."""
    try:
        return open_store().write(bodies, origin, error=error, failed_at=failed_at, attempts=attempts)
    except Exception as exc:
        # Our own errors say what failed; anything else is named by its type only (see
        # DeadLetterUnavailable for why no SDK text is logged).
        reason = str(exc)[:500] if isinstance(exc, DeadLetterError | SettingsError) else type(exc).__name__
        log.error("dead letter NOT written for %s (%d bodies): %s", origin.describe(), len(bodies), reason)
        return None
