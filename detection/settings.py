"""Every app setting, declared once: name, type, default and meaning.

The Functions host, `python -m detection` and the tests all build one validated `Settings` from a
plain mapping (the environment, or a local.settings.json). Nothing deeper in the package reads the
environment, so a bad value fails at start-up with the setting's name instead of mid-batch, and the
README's configuration table is generated from the same declarations (`python -m detection settings`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

BUNDLED_RULES_DIR = Path(__file__).resolve().parent / "rules"
SEVERITIES = ("low", "medium", "high", "critical")


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the setting and the problem."""


KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


def check_key_vault_references(env: Mapping[str, str]) -> None:
    """An unresolved Key Vault reference reaches the app as its literal text; naming it as such saves
    chasing a misleading "not an https URL"."""
    for name, value in env.items():
        if isinstance(value, str) and value.strip().startswith(KEY_VAULT_REFERENCE):
            raise SettingsError(
                f"setting {name}: the Key Vault reference was not resolved; check that the app's identity "
                "has Key Vault Secrets User on the vault and that keyVaultReferenceIdentity names it "
                "(the portal shows the reason next to the app setting)")


# ---- value parsers: each takes the raw string and returns the typed value or raises ValueError ----

def _text(raw: str) -> str:
    return raw.strip()


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _optional_kql(raw: str) -> str | None:
    """A KQL query checked at start-up, so a typo fails here with its position, not in every batch."""
    query = _optional_text(raw)
    if query is not None:
        from detection.kql import KqlSyntaxError, parse

        try:
            parse(query)
        except KqlSyntaxError as exc:
            raise ValueError(f"is not valid KQL: {exc}") from None
    return query


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return value


# Deeper documents could exhaust the stack of the recursive ECS mapping and predicates, and an alert
# (which wraps the record a few levels down) could no longer be written as JSON (orjson stops at 255).
MAX_NESTING = 128


def _nesting_depth(raw: str) -> int:
    value = _positive_int(raw)
    if value > MAX_NESTING:
        raise ValueError(f"must be at most {MAX_NESTING}, since deeper documents could exhaust the stack "
                         f"of the recursive mapping and query evaluation, or make alerts too deep to write "
                         f"as JSON; got {value}")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(raw: str) -> timedelta:
    """`90s`, `60m`, `24h`, `3d`: the one duration syntax of settings and rule files."""
    match = _DURATION.match(raw)
    if not match:
        raise ValueError(f"expected a duration such as 90s, 60m, 24h or 3d, got {raw!r}")
    value = timedelta(**{_UNIT[match.group(2)]: float(match.group(1))})
    if value <= timedelta(0):
        raise ValueError(f"must be longer than 0, got {raw!r}")
    return value


def _severity(raw: str) -> str:
    value = raw.strip().lower()
    if value not in SEVERITIES:
        raise ValueError(f"expected one of {', '.join(SEVERITIES)}, got {raw!r}")
    return value


def _directory(raw: str) -> Path:
    path = Path(raw.strip()).expanduser()
    if not path.is_dir():
        raise ValueError(f"{raw!r} is not a directory")
    return path


def _https_url(raw: str) -> str | None:
    """Webhook URLs: https only, except plain http to this machine for local runs and tests."""
    from urllib.parse import urlsplit

    value = raw.strip()
    if not value:
        return None
    parts = urlsplit(value)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and local:
        return value
    # Never echo the URL itself: it is a secret.
    raise ValueError(
        f"must be an https URL (http is accepted only for 127.0.0.1/localhost); got scheme "
        f"{parts.scheme or 'none'!r} for host {parts.hostname or 'none'!r}"
    )


def _retention_days(raw: str) -> int:
    value = _positive_int(raw)
    if value < 8:
        raise ValueError(
            f"must be at least 8 days, since Microsoft 365 records can arrive 7 days late; got {value}"
        )
    return value


def _json_object(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
# (field, lowest, highest, names) in NCRONTAB order; the seconds field is optional, as for the host.
_CRON_FIELDS = (("second", 0, 59, ()), ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day", 1, 31, ()),
                ("month", 1, 12, _MONTHS), ("day-of-week", 0, 6, _DAYS))


def _ncrontab(raw: str) -> str:
    """A timer schedule. The host reads it from the app setting when it indexes the functions and
    rejects a bad one without naming the setting, so it is checked here like every other value."""
    fields = raw.split()
    if len(fields) not in (5, 6):
        raise ValueError("expected an NCRONTAB schedule of six fields (second minute hour day month "
                         f"day-of-week), e.g. '0 */5 * * * *'; got {raw!r}")
    for text, spec in zip(fields, _CRON_FIELDS[6 - len(fields):], strict=True):
        for item in text.split(","):
            _cron_item(item, *spec)
    return raw.strip()


def _cron_item(item: str, field_name: str, low: int, high: int, names: tuple[str, ...]) -> None:
    base, slash, step = item.partition("/")
    ok = not slash or (step.isdigit() and int(step) > 0)
    if base != "*":
        bounds = base.split("-", 1)
        ok = ok and all(low <= _cron_value(bound, low, names) <= high for bound in bounds)
    if not ok:
        raise ValueError(f"{field_name} field {item!r}: expected *, a value {low}-{high}"
                         f"{' or a name' if names else ''}, a range a-b, or any of them with /step")


def _cron_value(text: str, low: int, names: tuple[str, ...]) -> int:
    if text.isdigit():
        return int(text)
    if len(text) >= 3:
        for index, name in enumerate(names):
            if name.startswith(text.lower()):
                return low + index
    return -1


# ---- the declarations ----

def setting(
    name: str,
    parse: Callable[[str], Any],
    default: str | None,
    doc: str,
    *,
    group: str,
    secret: bool = False,
    infra: bool = False,
) -> Any:
    """Declare one app setting as a dataclass field.

    `default` is the raw string a missing setting stands for (None: no default, the value is None).
    `infra` marks settings the Bicep sets on the deployed app; the consistency test checks both ways.
    """
    meta = {"name": name, "parse": parse, "default": default, "doc": doc, "group": group,
            "secret": secret, "infra": infra}
    initial = None if default is None else parse(default)
    if isinstance(initial, (dict, list)):
        return field(default_factory=lambda: parse(default), metadata=meta)
    return field(default=initial, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one process. Build it with `Settings.from_env`."""

    # Detection
    rules_dir: Path = setting(
        "RULES_DIR", _directory, str(BUNDLED_RULES_DIR),
        "Folder of TOML rule files (Elastic detection-rules format). Defaults to the bundled rules.",
        group="Detection")
    prefilter: bool = setting(
        "PREFILTER", _boolean, "true",
        "Skip full parsing of bodies that cannot match any rule. Turn off only to compare paths.",
        group="Detection")
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES", _positive_int, str(32 * 1024 * 1024),
        "Largest body accepted, after gzip decompression; larger ones are skipped as too_large.",
        group="Detection")
    max_depth: int = setting(
        "MAX_DEPTH", _nesting_depth, "64",
        "Deepest JSON nesting accepted in a body (at most 128); deeper ones are skipped as too_deep.",
        group="Detection")
    max_records_per_body: int = setting(
        "MAX_RECORDS_PER_BODY", _positive_int, "100000",
        "Most records taken from one body; the rest are skipped as too_many_records.",
        group="Detection")
    exceptions_kql: str | None = setting(
        "EXCEPTIONS_KQL", _optional_kql, None,
        "KQL query; a record it matches makes no alert for any rule (counted as excepted).",
        group="Detection")
    suppression_overrides: dict[str, Any] = setting(
        "SUPPRESSION_OVERRIDES", _json_object, "",
        'JSON object rule_id → {"group_by": [fields], "window": "60m", "missing": "group"|"separate"}, '
        "overriding a rule file's [suppression] table. An unknown rule_id stops start-up.",
        group="Detection")
    maintenance_windows: str | None = setting(
        "MAINTENANCE_WINDOWS", _optional_text, None,
        "Comma-separated ISO-8601 intervals (2026-01-05T22:00Z/2026-01-06T02:00Z) or weekly UTC "
        "windows (Sat 22:00/Sun 04:00); alerts inside are stored as muted, not notified.",
        group="Detection")

    # Alert state (Table Storage)
    alerts_storage_connection: str | None = setting(
        "ALERTS_STORAGE_CONNECTION", _optional_text, None,
        "Table Storage connection string (Azurite locally). Takes precedence over the endpoint.",
        group="Alert state", secret=True)
    alerts_storage_endpoint: str | None = setting(
        "ALERTS_STORAGE_ENDPOINT", _optional_text, None,
        "https://<account>.table.core.windows.net, reached with the managed identity.",
        group="Alert state", infra=True)
    azure_webjobs_storage: str | None = setting(
        "AzureWebJobsStorage", _optional_text, None,
        "The host's storage connection string; used for alert state when neither setting above is set.",
        group="Alert state", secret=True)
    azure_webjobs_storage_table_uri: str | None = setting(
        "AzureWebJobsStorage__tableServiceUri", _optional_text, None,
        "The host's identity-based table endpoint; fallback for alert state.",
        group="Alert state", infra=True)
    azure_webjobs_storage_account: str | None = setting(
        "AzureWebJobsStorage__accountName", _optional_text, None,
        "The host's storage account name; fallback for alert state (endpoint derived from it).",
        group="Alert state")
    azure_client_id: str | None = setting(
        "AZURE_CLIENT_ID", _optional_text, None,
        "Client id of the user-assigned managed identity used for Azure access.",
        group="Alert state", infra=True)
    alerts_table: str = setting(
        "ALERTS_TABLE", _text, "alerts", "Table of alerts and their delivery ledgers.",
        group="Alert state")
    groups_table: str = setting(
        "GROUPS_TABLE", _text, "alertgroups", "Table of suppression groups and their counters.",
        group="Alert state")
    health_table: str = setting(
        "HEALTH_TABLE", _text, "health", "Table of per-tenant source and delivery counters.",
        group="Alert state")
    retention_days: int = setting(
        "RETENTION_DAYS", _retention_days, "30",
        "Days alerts and groups are kept (at least 8: records can arrive 7 days late).",
        group="Alert state")

    # Notifications
    teams_webhook_url: str | None = setting(
        "TEAMS_WEBHOOK_URL", _https_url, None,
        'Teams Workflows "When a Teams webhook request is received" URL (a Key Vault reference).',
        group="Notifications", secret=True, infra=True)
    slack_webhook_url: str | None = setting(
        "SLACK_WEBHOOK_URL", _https_url, None,
        "Slack incoming webhook URL (a Key Vault reference).",
        group="Notifications", secret=True, infra=True)
    webhook_url: str | None = setting(
        "WEBHOOK_URL", _https_url, None,
        "Generic JSON webhook for SOAR tools (a Key Vault reference).",
        group="Notifications", secret=True, infra=True)
    webhook_secret: str | None = setting(
        "WEBHOOK_SECRET", _optional_text, None,
        "HMAC-SHA256 key signing the generic webhook's body (a Key Vault reference).",
        group="Notifications", secret=True, infra=True)
    teams_min_severity: str = setting(
        "TEAMS_MIN_SEVERITY", _severity, "low", "Lowest alert severity posted to Teams.",
        group="Notifications")
    slack_min_severity: str = setting(
        "SLACK_MIN_SEVERITY", _severity, "low", "Lowest alert severity posted to Slack.",
        group="Notifications")
    webhook_min_severity: str = setting(
        "WEBHOOK_MIN_SEVERITY", _severity, "low", "Lowest alert severity posted to the webhook.",
        group="Notifications")
    http_connect_timeout: float = setting(
        "HTTP_CONNECT_TIMEOUT", _positive_float, "5", "Seconds to connect to a webhook.",
        group="Notifications")
    http_read_timeout: float = setting(
        "HTTP_READ_TIMEOUT", _positive_float, "15", "Seconds to wait for a webhook's answer.",
        group="Notifications")
    delivery_max_age: timedelta = setting(
        "DELIVERY_MAX_AGE", parse_duration, "3d",
        "How long an owed notification is retried before the destination is marked failed.",
        group="Notifications")

    # Function app
    eventhub_name: str | None = setting(
        "EVENTHUB_NAME", _optional_text, None, "Event Hub the trigger reads (bound by the host).",
        group="Function app", infra=True)
    eventhub_consumer_group: str = setting(
        "EVENTHUB_CONSUMER_GROUP", _text, "$Default",
        "Consumer group of the trigger (bound by the host).",
        group="Function app", infra=True)
    redeliver_schedule: str = setting(
        "REDELIVER_SCHEDULE", _ncrontab, "0 */5 * * * *",
        "NCRONTAB schedule of the redelivery timer (bound by the host, so it must be set).",
        group="Function app", infra=True)
    deadletter_container: str = setting(
        "DEADLETTER_CONTAINER", _text, "deadletter",
        "Blob container where batches that failed every retry are written for replay.",
        group="Function app", infra=True)
    azure_webjobs_storage_blob_uri: str | None = setting(
        "AzureWebJobsStorage__blobServiceUri", _optional_text, None,
        "The host's identity-based blob endpoint, home of the dead-letter container (else the "
        "connection strings above).",
        group="Function app", infra=True)

    # Health
    silence_threshold: timedelta = setting(
        "SILENCE_THRESHOLD", parse_duration, "24h",
        "A workload that was active and sends nothing for this long is reported silent.",
        group="Health")
    drift_window: timedelta = setting(
        "DRIFT_WINDOW", parse_duration, "30d",
        "A rule whose input operations were not seen for this long while the workload was active "
        "is reported as possibly blind.",
        group="Health")
    heartbeat_enabled: bool = setting(
        "HEARTBEAT_ENABLED", _boolean, "false",
        "Post a daily health summary to every configured destination.",
        group="Health")
    health_schedule: str = setting(
        "HEALTH_SCHEDULE", _ncrontab, "0 */15 * * * *",
        "NCRONTAB schedule of the health timer: silence and drift checks, their notices, the heartbeat.",
        group="Health")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Validate every declared setting found in `env` (default: os.environ)."""
        env = os.environ if env is None else env
        check_key_vault_references(env)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata
            raw = env.get(meta["name"])
            if raw is None or (raw.strip() == "" and meta["default"] is not None):
                continue
            try:
                values[f.name] = meta["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"setting {meta['name']}: {exc}") from None
        return cls(**values)

    @classmethod
    def from_local_settings(cls, path: Path, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from a Functions `local.settings.json` (its Values), over the environment."""
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SettingsError(f"{path}: cannot read settings: {exc}") from None
        values = document.get("Values") if isinstance(document, dict) else None
        if not isinstance(values, dict):
            raise SettingsError(f"{path}: expected an object with a 'Values' object")
        merged = dict(os.environ if env is None else env)
        merged.update({str(k): str(v) for k, v in values.items()})
        return cls.from_env(merged)


def declarations() -> list[dict[str, Any]]:
    """The declared settings as plain data, for the README table and the infra consistency test."""
    return [dict(f.metadata, field=f.name) for f in dataclasses.fields(Settings)]


def markdown_table() -> str:
    """The README's configuration table, generated so that it cannot drift from the code."""
    rows = ["| Setting | Default | Meaning |", "| --- | --- | --- |"]
    for d in declarations():
        default = "—" if d["default"] in (None, "") else f"`{d['default']}`"
        if d["name"] == "RULES_DIR":
            default = "bundled `detection/rules`"
        secret = " **Secret.**" if d["secret"] else ""
        rows.append(f"| `{d['name']}` | {default} | {d['doc']}{secret} |")
    return "\n".join(rows)
