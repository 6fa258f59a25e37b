"""`send`: publish bodies to an Event Hub, for backfills and for testing a deployment end to end.

Bodies are read with the same conventions as `scan` (a file is one body, `.jsonl`/`.ndjson` one body
per line, `-` stdin), packed into as few `EventDataBatch`es as the hub's size limit allows, in input
order, and sent with Entra ID (DefaultAzureCredential: `az login`, a managed identity, ...): the
signed-in identity needs Azure Event Hubs Data Sender on the hub (the Bicep grants it to
`senderPrincipalId`). No connection string or key is ever needed.
"""

from __future__ import annotations

import argparse
import gzip
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from detection.cli.common import CommandError, run_command, write_json_line
from detection.cli.inputs import InputError, iter_bodies

SERVICEBUS_SUFFIX = ".servicebus.windows.net"


@dataclass
class Packed:
    """One batch ready to send, with the input positions of its bodies (for messages and tests)."""

    batch: Any  # azure.eventhub.EventDataBatch
    indexes: list[int] = field(default_factory=list)
    body_bytes: int = 0


def pack(bodies: Iterable[bytes], new_batch: Callable[[], Any]) -> Iterator[Packed]:
    """Fill batches from `new_batch()` in order; a batch is yielded when the next body no longer fits.

    The batch object measures the encoded size itself (AMQP framing included), so the limit is the
    hub's own. A body too big for an empty batch cannot be sent as one event: that is an error naming
    the body, never a silent drop.
    """
    from azure.eventhub import EventData

    current: Packed | None = None  # the first batch is asked for only once there is a body for it
    for index, body in enumerate(bodies):
        if current is None:
            current = Packed(new_batch())
        try:
            current.batch.add(EventData(body))
        except ValueError:
            if not current.indexes:
                raise CommandError(_too_large(index, body, current.batch.max_size_in_bytes)) from None
            yield current
            current = Packed(new_batch())
            try:
                current.batch.add(EventData(body))
            except ValueError:
                raise CommandError(_too_large(index, body, current.batch.max_size_in_bytes)) from None
        current.indexes.append(index)
        current.body_bytes += len(body)
    if current is not None and current.indexes:
        yield current


def _too_large(index: int, body: bytes, limit: int) -> str:
    return (f"body {index} ({len(body)} bytes) is larger than one event may be on this hub ({limit} bytes "
            "with framing): send its records one per line (.jsonl) or use --gzip")


def fully_qualified(namespace: str) -> str:
    """`contoso` or `contoso.servicebus.windows.net` (or another cloud's full host name)."""
    value = namespace.strip().removeprefix("sb://").removeprefix("https://").rstrip("/")
    return value if "." in value else value + SERVICEBUS_SUFFIX


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "send", help="publish bodies to an Event Hub (backfill, deployment test)",
        description="Publish Event Hub bodies read from files to a hub with Entra ID authentication, "
                    "packed into batches up to the hub's size limit. Prints one JSON summary line. Exit 0 "
                    "when everything was sent, 2 on usage errors, 1 when the service refused.")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="a file is one body; .jsonl/.ndjson is one body per line; - is stdin")
    parser.add_argument("--namespace", metavar="NS",
                        help="Event Hubs namespace (name or host name; azd output EVENTHUB_NAMESPACE_FQDN)")
    parser.add_argument("--hub", metavar="H", help="Event Hub name (azd output EVENTHUB_NAME)")
    parser.add_argument("--partition-key", metavar="KEY",
                        help="send every body with this partition key (default: spread over partitions)")
    parser.add_argument("--gzip", action="store_true",
                        help="compress each body (the function decompresses gzip bodies)")
    parser.add_argument("--dry-run", action="store_true",
                        help="pack offline against the standard 1 MB limit and report, sending nothing")
    parser.set_defaults(func=lambda args: run_command(run, args))


def _require(args: argparse.Namespace) -> tuple[str, str]:
    missing = [option for option, value in (("--namespace", args.namespace), ("--hub", args.hub))
               if not (value or "").strip()]
    if missing and not args.dry_run:
        raise CommandError(
            f"{' and '.join(missing)} required: the Event Hubs namespace (e.g. "
            f"evhns-m365-abc{SERVICEBUS_SUFFIX}) and the hub name; after `azd up`, "
            "`azd env get-values` shows them as EVENTHUB_NAMESPACE_FQDN and EVENTHUB_NAME")
    return fully_qualified(args.namespace or "dry-run"), (args.hub or "dry-run").strip()


def _bodies(args: argparse.Namespace) -> Iterator[bytes]:
    for body in iter_bodies(args.paths):
        yield gzip.compress(body, mtime=0) if args.gzip else body


def _check_inputs(paths: list[str]) -> None:
    """Every named file readable before the first connection: a backfill does not stop half-sent
    on a typo in its last path."""
    for path in paths:
        if path != "-" and not os.access(path, os.R_OK):
            reason = "permission denied" if os.path.exists(path) else "no such file"
            raise InputError(f"{path}: cannot read: {reason}")


def run(args: argparse.Namespace) -> int:
    namespace, hub = _require(args)
    _check_inputs(args.paths)
    summary: dict[str, Any] = {"namespace": namespace, "hub": hub, "bodies": 0, "batches": 0,
                               "bytes": 0, "sent": not args.dry_run}
    if args.dry_run:
        from azure.eventhub import EventDataBatch

        for packed in pack(_bodies(args), lambda: EventDataBatch(partition_key=args.partition_key)):
            _count(summary, packed)
        write_json_line(summary)
        return 0
    return _send(args, namespace, hub, summary)


def _count(summary: dict[str, Any], packed: Packed) -> None:
    summary["bodies"] += len(packed.indexes)
    summary["batches"] += 1
    summary["bytes"] += packed.body_bytes


def _send(args: argparse.Namespace, namespace: str, hub: str, summary: dict[str, Any]) -> int:
    from azure.core.exceptions import AzureError, ClientAuthenticationError
    from azure.eventhub import EventHubProducerClient
    from azure.eventhub.exceptions import EventHubError
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    producer = EventHubProducerClient(fully_qualified_namespace=namespace, eventhub_name=hub,
                                      credential=credential)
    try:
        with producer:
            new_batch = lambda: producer.create_batch(partition_key=args.partition_key)  # noqa: E731
            for packed in pack(_bodies(args), new_batch):
                producer.send_batch(packed.batch)
                _count(summary, packed)
    except CommandError as exc:
        summary["sent"] = False
        summary["error"] = str(exc)
        write_json_line(summary)  # what went out before the error, so a backfill can resume
        raise
    except (EventHubError, ClientAuthenticationError, AzureError) as exc:
        summary["sent"] = False
        summary["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        write_json_line(summary)
        return 1
    finally:
        credential.close()
    write_json_line(summary)
    return 0
