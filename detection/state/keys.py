"""Table keys that obey the service's rules whatever the tenant, user or rule strings contain.

PartitionKey and RowKey may not hold `/ \\ # ?` or control characters and are at most 1 KiB; tenant and
user ids come from audit records, so any of those can appear. Readable ids (tenant GUIDs, our own hex
alert ids) are used as they are; anything else is replaced by a SHA-256 digest. The two forms carry
different prefixes, so no readable id can ever equal a digest key, and distinct tenants never share a
partition. Every key built here is pure ASCII and short.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import orjson

from detection.settings import SettingsError

_READABLE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")

OWED_PARTITION = "owed"  # index rows of deliverables that still owe a destination (see state.store)
SERIES_ROW = "series"


def _digest(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def tenant_key(tenant_id: str) -> str:
    """The partition of one tenant's alerts: `t-<tenant>` when the id is plain, else `h-<sha256>`."""
    if _READABLE.fullmatch(tenant_id):
        return "t-" + tenant_id
    return "h-" + hashlib.sha256(tenant_id.encode("utf-8", "surrogatepass")).hexdigest()


def series_key(rule_id: str, tenant_id: str, values: tuple[object, ...]) -> str:
    """The partition of one suppression series: a rule, a tenant and the group-by values, in any script."""
    return "s-" + _digest(rule_id, tenant_id, list(values))[:48]


def stamp(when: datetime) -> str:
    """A sortable UTC timestamp for row keys: 20260105T220000Z (lexical order is time order)."""
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def window_row(window_start: datetime) -> str:
    return "w-" + stamp(window_start)


def member_row(window_start: datetime, alert_id: str) -> str:
    return f"m-{stamp(window_start)}-{safe_id(alert_id)}"


def take_row(alert_id: str) -> str:
    return "t-" + safe_id(alert_id)


def owed_row(partition: str, row: str) -> str:
    return f"{partition}~{row}"


def safe_id(value: str) -> str:
    """An id as a key component: itself when plain, else a digest (ids we mint are always plain)."""
    if _READABLE.fullmatch(value):
        return value
    return "h-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def notice_id(kind: str, *parts: object) -> str:
    """Deterministic id of a notice (overflow summary, delivery-failed notice), like an alert's."""
    return f"n-{kind}-" + _digest(kind, *parts)[:32]


def check_table_name(setting: str, name: str) -> str:
    """Table names are 3-63 letters and digits starting with a letter; a bad one fails at start-up."""
    if not _TABLE_NAME.fullmatch(name):
        raise SettingsError(
            f"setting {setting}: {name!r} is not a valid table name (3-63 letters or digits, starting "
            "with a letter)")
    return name
