"""The one adapter between the alert state and Azure Table Storage (azure-data-tables).

Everything above this module works on plain dicts of Python values and on our own exceptions, so the
decisions made there do not depend on the SDK. Here:

- where the tables are: `resolve_connection` reads the documented settings in their documented order;
- transient failures (connection refused, timeouts, 408/429/5xx) are retried with exponential backoff and
  jitter inside the call, and only then raised as `StorageUnavailable` so the batch is retried as a whole
  (the SDK's own retries are off: one policy, with bounds the caller chose);
- values are converted both ways (int64 through `EntityProperty`, the SDK's datetime subclass to datetime);
- filters are always parameterised: `@name` tokens, never values formatted into the text.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from detection.settings import Settings, SettingsError

log = logging.getLogger(__name__)
# The SDK logs every request and response at INFO; a batch makes hundreds. Keep them out of the
# Function's logs unless someone configured that logger on purpose.
_sdk_requests = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
if _sdk_requests.level == logging.NOTSET:
    _sdk_requests.setLevel(logging.WARNING)

T = TypeVar("T")
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
INT32 = range(-(2**31), 2**31)


class StorageError(RuntimeError):
    """Table Storage refused an operation for a reason a retry will not change."""


class StorageUnavailable(StorageError):
    """Table Storage stayed unreachable or overloaded through every retry: retry the whole batch later."""


class EtagMismatch(StorageError):
    """The entity changed (or vanished) since it was read: read it again and redo the decision."""


class TransactionFailed(StorageError):
    """One operation of a transaction failed, so none was applied. `code` is the service's error code."""

    def __init__(self, message: str, *, index: int, code: str) -> None:
        super().__init__(message)
        self.index = index
        self.code = code


@dataclass(frozen=True)
class Stored:
    """An entity as read: plain values, and the ETag a conditional write must quote."""

    entity: dict[str, Any]
    etag: str


@dataclass(frozen=True)
class Connection:
    """Where the alert tables live; `describe()` is safe to log (no keys, no SAS)."""

    kind: Literal["connection_string", "endpoint"]
    value: str
    source: str

    def describe(self) -> str:
        if self.kind == "endpoint":
            return f"{urlsplit(self.value).hostname} (managed identity, from {self.source})"
        parts = dict(p.split("=", 1) for p in self.value.split(";") if "=" in p)
        endpoint = parts.get("TableEndpoint")
        host = urlsplit(endpoint).netloc if endpoint else parts.get("AccountName", "development storage")
        return f"{host} (connection string from {self.source})"


def resolve_connection(settings: Settings) -> Connection:
    """The documented order: ALERTS_STORAGE_CONNECTION, ALERTS_STORAGE_ENDPOINT (identity), then the
    host's own storage: AzureWebJobsStorage as a connection string, or its identity-based
    `__tableServiceUri` / `__accountName`."""
    if settings.alerts_storage_connection:
        return Connection("connection_string", settings.alerts_storage_connection,
                          "ALERTS_STORAGE_CONNECTION")
    if settings.alerts_storage_endpoint:
        return Connection("endpoint", _endpoint("ALERTS_STORAGE_ENDPOINT", settings.alerts_storage_endpoint),
                          "ALERTS_STORAGE_ENDPOINT")
    if settings.azure_webjobs_storage:
        return Connection("connection_string", settings.azure_webjobs_storage, "AzureWebJobsStorage")
    if settings.azure_webjobs_storage_table_uri:
        return Connection("endpoint", _endpoint("AzureWebJobsStorage__tableServiceUri",
                                                settings.azure_webjobs_storage_table_uri),
                          "AzureWebJobsStorage__tableServiceUri")
    if settings.azure_webjobs_storage_account:
        account = settings.azure_webjobs_storage_account
        if not account.isalnum() or not account.islower() or not 3 <= len(account) <= 24:
            raise SettingsError(f"setting AzureWebJobsStorage__accountName: {account!r} is not a storage "
                                "account name (3-24 lower-case letters and digits)")
        return Connection("endpoint", f"https://{account}.table.core.windows.net",
                          "AzureWebJobsStorage__accountName")
    raise SettingsError("alert state: set ALERTS_STORAGE_CONNECTION (e.g. Azurite), ALERTS_STORAGE_ENDPOINT "
                        "(with a managed identity) or AzureWebJobsStorage")


def _endpoint(setting: str, url: str) -> str:
    parts = urlsplit(url.strip())
    local = parts.hostname in ("127.0.0.1", "localhost")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and local)):
        raise SettingsError(f"setting {setting}: expected https://<account>.table.core.windows.net, "
                            f"got scheme {parts.scheme or 'none'!r} for host {parts.hostname or 'none'!r}")
    return url.strip().rstrip("/")


def credential_options(settings: Settings) -> dict[str, str]:
    """DefaultAzureCredential's options: pinned to the user-assigned identity AZURE_CLIENT_ID names."""
    if settings.azure_client_id:
        return {"managed_identity_client_id": settings.azure_client_id}
    return {}


def default_credential(settings: Settings) -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(**credential_options(settings))


def _to_service(entity: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in entity.items():
        if isinstance(value, bool) or not isinstance(value, int) or value in INT32:
            out[name] = value
        else:
            out[name] = EntityProperty(value, EdmType.INT64)
    return out


def _from_service(entity: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in entity.items():
        if isinstance(value, EntityProperty):
            value = value.value
            if isinstance(value, str) and value.lstrip("-").isdigit():
                value = int(value)
        if isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                             value.microsecond, tzinfo=value.tzinfo or UTC)
        out[name] = value
    return out


def _etag(metadata: Mapping[str, Any]) -> str:
    return str(metadata.get("etag") or "")


class Tables:
    """Named tables of one storage account, with the retry policy of the alert state.

    `roles` maps our names ("alerts", "groups") to the configured table names. `on_call` (optional) is
    called with the operation's name before every service request; it is how tests take the real
    service down at an exact point.
    """

    def __init__(
        self,
        service: TableServiceClient,
        roles: Mapping[str, str],
        *,
        attempts: int = 6,
        base_delay: float = 0.25,
        max_delay: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        on_call: Callable[[str], None] | None = None,
        description: str = "table storage",
    ) -> None:
        self._service = service
        self._clients: dict[str, TableClient] = {
            role: service.get_table_client(name) for role, name in roles.items()}
        self.names = dict(roles)
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self.on_call = on_call
        self.description = description

    @classmethod
    def open(
        cls,
        settings: Settings,
        roles: Mapping[str, str],
        *,
        credential: Any = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        **kwargs: Any,
    ) -> Tables:
        connection = resolve_connection(settings)
        client_options = {"retry_total": 0, "connection_timeout": connect_timeout,
                          "read_timeout": read_timeout}
        if connection.kind == "connection_string":
            try:
                service = TableServiceClient.from_connection_string(connection.value, **client_options)
            except ValueError as exc:
                raise SettingsError(f"setting {connection.source}: not a usable connection string "
                                    f"({type(exc).__name__})") from None
        else:
            service = TableServiceClient(endpoint=connection.value,
                                         credential=credential or default_credential(settings),
                                         **client_options)
        return cls(service, roles, description=connection.describe(), **kwargs)

    # ---- the retry policy ----

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one service request with the retry policy.

        Errors leave here without the SDK's text or cause: a transport error may quote the request URL,
        and with a SAS connection string the URL carries the signature. What callers decide on (exists,
        not found, ETag mismatch, a transaction's failing operation) passes through unchanged.
        """
        last: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            if self.on_call is not None:
                self.on_call(operation)
            try:
                return fn()
            except (ServiceRequestError, ServiceResponseError) as exc:
                last = exc
            except _DECIDED:
                raise
            except HttpResponseError as exc:
                if exc.status_code not in TRANSIENT_STATUSES:
                    code = getattr(exc, "error_code", None)
                    raise StorageError(
                        f"table storage at {self.description} refused {operation}: HTTP {exc.status_code} "
                        f"{getattr(code, 'value', code) or type(exc).__name__}") from None
                last = exc
            if attempt < self.attempts:
                jitter = 0.5 + random.random() / 2  # noqa: S311 - spreading retries, not a secret
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * jitter
                log.info("table storage %s failed (%s), attempt %d of %d; retrying in %.2fs",
                         operation, type(last).__name__, attempt, self.attempts, delay)
                self._sleep(delay)
        raise StorageUnavailable(
            f"table storage at {self.description} unavailable: {operation} failed {self.attempts} times "
            f"({type(last).__name__})") from None

    def _table(self, role: str) -> TableClient:
        return self._clients[role]

    # ---- operations ----

    def ensure_tables(self) -> None:
        for role, name in self.names.items():
            self._call(f"create table {role}",
                       lambda name=name: self._service.create_table_if_not_exists(name))

    def create(self, role: str, entity: Mapping[str, Any]) -> str | None:
        """Insert `entity` and return its ETag; None when one with its keys exists (first writer wins).

        A retried create whose first attempt did reach the service also answers None: callers decide
        from the stored entity, never from having been the one who created it.
        """
        try:
            meta = self._call(f"create in {role}",
                              lambda: self._table(role).create_entity(_to_service(entity)))
        except ResourceExistsError:
            return None
        return _etag(meta)

    def get(self, role: str, partition: str, row: str) -> Stored | None:
        try:
            found = self._call(f"read in {role}", lambda: self._table(role).get_entity(partition, row))
        except ResourceNotFoundError:
            return None
        return Stored(_from_service(found), _etag(found.metadata))

    def update(self, role: str, entity: Mapping[str, Any], etag: str, *, merge: bool = True) -> str:
        """Write `entity` only if it still has `etag`; returns the new ETag, else raises EtagMismatch."""
        mode = UpdateMode.MERGE if merge else UpdateMode.REPLACE
        try:
            meta = self._call(f"update in {role}", lambda: self._table(role).update_entity(
                _to_service(entity), mode=mode, etag=etag, match_condition=MatchConditions.IfNotModified))
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise EtagMismatch(f"{role} entity changed since it was read") from exc
        return _etag(meta)

    def upsert(self, role: str, entity: Mapping[str, Any], *, merge: bool = True) -> str:
        mode = UpdateMode.MERGE if merge else UpdateMode.REPLACE
        meta = self._call(f"upsert in {role}", lambda: self._table(role).upsert_entity(
            _to_service(entity), mode=mode))
        return _etag(meta)

    def delete(self, role: str, partition: str, row: str, etag: str | None = None) -> bool:
        """Delete (only if unchanged when `etag` is given). False when the ETag no longer matches; an
        entity that is already gone counts as deleted (the SDK does not tell the two apart)."""
        options: dict[str, Any] = {}
        if etag:
            options = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            self._call(f"delete in {role}",
                       lambda: self._table(role).delete_entity(partition, row, **options))
        except ResourceModifiedError:
            return False
        except ResourceNotFoundError:
            return False
        return True

    def transact(self, role: str, operations: Sequence[tuple[str, Mapping[str, Any], str | None]]) -> None:
        """Apply all of `operations` or none: ("create", entity, None), ("update", entity, etag) or
        ("delete", keys, None).

        All entities must share one partition (the service's rule; Azurite does not enforce it).
        """
        partitions = {entity["PartitionKey"] for _, entity, _ in operations}
        if len(partitions) != 1 or len(operations) > 100:
            raise ValueError("a transaction spans exactly one partition and at most 100 operations")
        batch: list[Any] = []
        for kind, entity, etag in operations:
            if kind == "create":
                batch.append(("create", _to_service(entity)))
            elif kind == "update" and etag:
                batch.append(("update", _to_service(entity), {
                    "mode": UpdateMode.MERGE, "etag": etag,
                    "match_condition": MatchConditions.IfNotModified}))
            elif kind == "delete":
                batch.append(("delete", {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"]}))
            else:
                raise ValueError(f"unsupported transaction operation {kind!r}")
        try:
            self._call(f"transaction in {role}", lambda: self._table(role).submit_transaction(batch))
        except TableTransactionError as exc:
            code = str(getattr(exc.error_code, "value", exc.error_code) or "")
            raise TransactionFailed(f"transaction in {role} failed at operation {exc.index}: {code}",
                                    index=exc.index, code=code) from None

    def query(
        self,
        role: str,
        query_filter: str,
        parameters: Mapping[str, Any],
        *,
        select: Sequence[str] | None = None,
        limit: int | None = None,
        page_size: int = 1000,
        max_pages: int | None = None,
    ) -> Iterator[Stored]:
        """Entities matching a parameterised filter: `@name` tokens, each a whole space-separated word.

        Pages are fetched one at a time, each with the retry policy, resuming from the page's
        continuation token, so an interruption never restarts or skips part of the result.
        `max_pages` bounds the work of one call (a filter over a large table may return empty pages).
        """
        _check_parameters(query_filter, parameters)
        token: Any = None
        returned = 0
        pages_read = 0
        while max_pages is None or pages_read < max_pages:
            pages_read += 1
            def fetch(token: Any = token) -> tuple[list[Any], Any]:
                pages = self._table(role).query_entities(
                    query_filter, parameters=dict(parameters), select=list(select) if select else None,
                    results_per_page=page_size).by_page(continuation_token=token)
                try:
                    page = list(next(pages))
                except StopIteration:
                    return [], None
                return page, pages.continuation_token  # type: ignore[attr-defined]

            page, token = self._call(f"query in {role}", fetch)
            for item in page:
                yield Stored(_from_service(item), _etag(item.metadata))
                returned += 1
                if limit is not None and returned >= limit:
                    return
            if not token:
                return


# Answers the callers of `_call` turn into decisions; everything else becomes our own error.
_DECIDED = (ResourceExistsError, ResourceNotFoundError, ResourceModifiedError, TableTransactionError)


def _check_parameters(query_filter: str, parameters: Mapping[str, Any]) -> None:
    """Every parameter must appear as a whole token, or the SDK would leave `@name)` unsubstituted."""
    tokens = set(query_filter.split())
    for name in parameters:
        if f"@{name}" not in tokens:
            raise ValueError(f"filter parameter @{name} must stand alone between spaces in {query_filter!r}")
    for token in tokens:
        if token.startswith("@") and token[1:] not in parameters:
            raise ValueError(f"filter token {token!r} has no parameter")
