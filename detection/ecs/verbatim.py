"""Which ECS fields are plain copies of a raw key: the contract the engine's prefilter builds on.

A rule literal on such a field can be looked for in the raw body before anything is parsed or mapped.
The answer must be sound, so every field whose value the mapping computes, converts or may take from
another key gets None; tests/test_ecs.py checks the promise over Elastic's fixture records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from detection.ecs import tables as t


@dataclass(frozen=True, slots=True)
class RawSource:
    """The ECS field's text value is `renames.get(raw[raw_key], raw[raw_key])`.

    Precisely: when raw[raw_key] is text, the field is either absent (Elastic moves some keys elsewhere
    for some workloads) or holds exactly that renamed text; when raw[raw_key] is missing, so is the field;
    and any other raw value (number, list, ...) never becomes text in the field.
    """

    raw_key: str
    renames: Mapping[str, str]


_NO_RENAMES: Mapping[str, str] = MappingProxyType({})

_ECS_SOURCES = {
    "event.action": RawSource("Operation", t.ACTION_RENAMES),
    "event.provider": RawSource("Workload", _NO_RENAMES),
    "event.id": RawSource("Id", _NO_RENAMES),
}

# Raw keys whose text the mapping rewrites, which it fills from elsewhere, or which never stay under
# o365.audit: no verbatim source for o365.audit.<key>.
_NOT_VERBATIM = frozenset(
    {
        # always lifted to ECS fields
        "Id", "Workload", "Operation", "OrganizationId", "UserAgent",
        # rewritten: integer or keyword text (numbers become text), platform names, dates, parsed JSON,
        # Name/Value maps, wrappers
        *t.INTEGER_TEXT_KEYS, *t.STRING_KEYS, "Platform", *t.DATE_KEYS, "AdditionalInfo",
        "OperationProperties", "Actions", "Parameters", "ExtendedProperties", "ModifiedProperties",
        "ExceptionInfo", "Data",
        # filled from other parts of the record
        "NetworkMessageId", "OriginalDeliveryLocation", "PhishConfidenceLevel", "ThreatDetectionMethods",
        "SenderEntity", "MessageObject", "ExchangeAggregatedMessages", "ExchangeAggregatedFolders",
    }
)  # fmt: skip

_PREFIX = "o365.audit."


def verbatim_source(ecs_field: str) -> RawSource | None:
    """The raw key an ECS field is a plain copy of, or None when its value is computed or transformed.

    user.id is not one: DLP and user alerts take it from the record's own user field, not from UserId.
    """
    source = _ECS_SOURCES.get(ecs_field)
    if source is not None:
        return source
    if ecs_field.startswith(_PREFIX):
        key = ecs_field[len(_PREFIX) :]
        if key and "." not in key and key not in _NOT_VERBATIM:
            return RawSource(key, _NO_RENAMES)
    return None
