"""The Function app's shell: start-up checks, one log line per batch, and the last-retry dead letter.

function_app.py only declares bindings and calls into this module, so what the host does with a
batch is plain Python that tests can run with real `func.EventHubEvent` batches.

How a failing batch travels (the Event Hubs extension checkpoints a batch once its retry policy is
done, success or not):
  1. the handler raises (Table Storage down, say) → we log a warning and re-raise, so the host runs
     the batch again after the policy's backoff, holding the partition's checkpoint meanwhile;
  2. on the last retry (retry_count == max_retry_count) we first write the bodies to the dead-letter
     container, log an error naming the partition and the sequence-number / offset range, then
     re-raise: the invocation shows as failed in Application Insights, and the host moves on.
  `python -m detection deadletter replay` later runs the stored batch through the same handler; if
  the dead-letter write failed too, the error line's range says where the batch still is in the hub.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from detection.deadletter import BatchOrigin, DeadLetterStore, resolve_location, write_best_effort
from detection.handler import BatchReport, Pipeline, build_pipeline
from detection.health.routine import health_timer
from detection.notify.base import system_clock
from detection.rules import RuleError
from detection.settings import Settings, SettingsError
from detection.state.keys import check_table_name
from detection.state.lifecycle import validate_settings
from detection.state.store import AlertStore

log = logging.getLogger("detection.function")

# The retry policy of the Event Hub function: exponential backoff from 4 s up to 5 min, 5 retries
# (about 9 minutes in all) - long enough to ride out a storage or network blip without holding a
# partition for long. Strings in the host's HH:MM:SS format.
MAX_RETRIES = 5
RETRY_MIN_INTERVAL = "00:00:04"
RETRY_MAX_INTERVAL = "00:05:00"
# Retention cleanup: once a day, at a quiet hour (UTC).
CLEANUP_SCHEDULE = "0 30 2 * * *"

def check_settings(env: Mapping[str, str]) -> Settings:
    """Every setting validated before any binding is registered, failing with the setting's name.

    An unresolved Key Vault reference is named as such (see settings.check_key_vault_references).

    Where the health counters and the dead letters live is checked here too (the alert tables are
    checked when `start` opens their store), though they are only used later: a missing or malformed
    location found by a batch would fail every batch through all its retries and past the checkpoint,
    instead of stopping the app before it reads anything.
    """
    settings = Settings.from_env(env)
    validate_settings(settings)
    check_table_name("HEALTH_TABLE", settings.health_table)
    resolve_location(settings)
    return settings


def start(env: Mapping[str, str], *, clock: Callable[[], datetime] = system_clock) -> Runtime:
    """The settings checked, and the pipeline built from them except for its tables: the rules loaded,
    the suppression overrides checked against them, the destinations made. None of that needs a
    service, and each of its errors is a configuration mistake that no retry can fix.

    A problem is logged at CRITICAL before it is raised: the host's indexing error then has the
    setting's or rule file's name in the log stream, and no function runs (nothing is consumed from
    the hub) until it is fixed.
    """
    try:
        settings = check_settings(env)
        pipeline = build_pipeline(settings, clock=clock, store=AlertStore.open(settings, create_tables=False))
    except (SettingsError, RuleError) as exc:
        log.critical("start-up failed, no function will run: %s", exc)
        raise
    return Runtime(pipeline)


@dataclass(frozen=True)
class RetryState:
    """Where this invocation is in the retry policy; `max_count` None means no policy applies."""

    count: int
    max_count: int | None

    @property
    def is_last(self) -> bool:
        if self.max_count is None:
            return True  # without a policy the host never runs the batch again
        if self.max_count < 0:
            return False  # retry forever
        return self.count >= self.max_count


def retry_state(context: Any) -> RetryState:
    retry = getattr(context, "retry_context", None) if context is not None else None
    if retry is None:
        return RetryState(0, None)
    return RetryState(int(retry.retry_count), int(retry.max_retry_count))


def origin_of(events: Sequence[Any]) -> BatchOrigin:
    """Partition, sequence-number, offset and enqueued-time range of a batch, from the trigger's
    metadata (SystemPropertiesArray, PartitionContext) or else from the events themselves."""
    if not events:
        return BatchOrigin()
    metadata = getattr(events[0], "metadata", None) or {}
    props = metadata.get("SystemPropertiesArray")
    if not isinstance(props, list) or len(props) != len(events):
        props = [{} for _ in events]
    pairs = list(zip(props, events, strict=True))
    sequences = [_first(p, "SequenceNumber", "x-opt-sequence-number", e.sequence_number) for p, e in pairs]
    offsets = [_first(p, "Offset", "x-opt-offset", e.offset) for p, e in pairs]
    enqueued = [_first(p, "EnqueuedTimeUtc", "x-opt-enqueued-time", e.enqueued_time) for p, e in pairs]
    context = metadata.get("PartitionContext")
    context = context if isinstance(context, Mapping) else {}
    numbers = sorted(int(s) for s in sequences if _is_int(s))
    known_offsets = [str(o) for o in offsets if o is not None]
    times = sorted(_text_time(t) for t in enqueued if t is not None)
    return BatchOrigin(
        partition_id=_optional_str(context.get("PartitionId")),
        first_sequence=numbers[0] if numbers else None,
        last_sequence=numbers[-1] if numbers else None,
        first_offset=known_offsets[0] if known_offsets else None,
        last_offset=known_offsets[-1] if known_offsets else None,
        first_enqueued=times[0] if times else None,
        last_enqueued=times[-1] if times else None,
        event_hub=_optional_str(context.get("EventHubName")),
        consumer_group=_optional_str(context.get("ConsumerGroup")),
    )


def _first(props: Mapping[str, Any], key: str, amqp_key: str, fallback: Any) -> Any:
    """The host's name for a system property, its AMQP annotation name, else the event's attribute."""
    for name in (key, amqp_key):
        if props.get(name) is not None:
            return props[name]
    return fallback


def _is_int(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def _text_time(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def batch_entry(report: BatchReport | None, origin: BatchOrigin, retry: RetryState, *,
                bodies: int, duration_ms: int, **extra: Any) -> dict[str, Any]:
    """The structured per-batch line: counts from the handler, position in the hub, retry position."""
    entry: dict[str, Any] = {"bodies": bodies}
    if report is not None:
        entry.update(records=report.records, skips=dict(sorted(report.skips.items())), alerts=report.alerts,
                     new=report.new, duplicates=report.duplicates, suppressed=report.suppressed,
                     excepted=report.excepted, muted=report.muted, overflow=report.overflow,
                     notified=report.notified, failures=report.delivery_failures, owed=report.owed)
    entry.update(duration_ms=duration_ms, partition=origin.partition_id, sequence_from=origin.first_sequence,
                 sequence_to=origin.last_sequence, offset_from=origin.first_offset,
                 offset_to=origin.last_offset, enqueued_from=origin.first_enqueued,
                 enqueued_to=origin.last_enqueued, retry=retry.count, max_retries=retry.max_count)
    entry.update(extra)
    return entry


def _line(kind: str, entry: Mapping[str, Any]) -> str:
    return f"{kind} {orjson.dumps(entry).decode()}"


class Runtime:
    """What one worker process keeps between invocations: the pipeline `start` built, whose tables
    are created on first use. Creating them needs the service, so a failure there is an ordinary
    failed invocation, retried like any other, rather than a dead app."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.settings = pipeline.settings
        self.clock = pipeline.clock
        self._pipeline = pipeline
        self._tables_ready = False
        self._lock = threading.Lock()

    def pipeline(self) -> Pipeline:
        with self._lock:
            if not self._tables_ready:
                self._pipeline.store.tables.ensure_tables()
                self._tables_ready = True
        return self._pipeline

    def _open_deadletters(self) -> DeadLetterStore:
        return DeadLetterStore.open(self.settings)

    def batch(self, events: Sequence[Any], context: Any = None) -> BatchReport:
        """Handle one Event Hub batch (see the module docstring for the failure path)."""
        started = time.monotonic()
        bodies = [event.get_body() for event in events]
        origin = origin_of(events)
        retry = retry_state(context)
        try:
            report = self.pipeline().handle(bodies)
        except Exception as exc:
            elapsed = int((time.monotonic() - started) * 1000)
            error = f"{type(exc).__name__}: {exc}"[:1000]
            if not retry.is_last:
                log.warning(_line("batch_failed", batch_entry(
                    None, origin, retry, bodies=len(bodies), duration_ms=elapsed, error=error,
                    next_step="the host retries the batch")))
                raise
            name = write_best_effort(self._open_deadletters, bodies, origin, error=error,
                                     failed_at=self.clock().astimezone(UTC), attempts=retry.count + 1)
            log.error(_line("batch_dead_lettered" if name else "batch_lost_from_hub_checkpoint", batch_entry(
                None, origin, retry, bodies=len(bodies), duration_ms=elapsed, error=error, deadletter=name,
                next_step=("replay with: python -m detection deadletter replay " + name) if name else
                f"the batch is still in the hub at {origin.describe()} until its retention ends")))
            raise
        elapsed = int((time.monotonic() - started) * 1000)
        log.info(_line("batch", batch_entry(report, origin, retry, bodies=len(bodies), duration_ms=elapsed)))
        return report

    def redeliver(self) -> dict[str, Any]:
        report = self.pipeline().redeliver().to_dict()
        log.info(_line("redeliver", report))
        return report

    def cleanup(self) -> dict[str, int]:
        report = self.pipeline().cleanup()
        log.info(_line("cleanup", report))
        return report

    def health(self) -> dict[str, Any]:
        return health_timer(self.pipeline())
