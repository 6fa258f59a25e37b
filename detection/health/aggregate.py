"""One batch's records → one small counters delta per tenant.

The handler calls this once per batch, so the store writes one row per tenant per batch however many
records the batch holds (bounded writes). Only three top-level keys of each raw record are read —
OrganizationId, Workload, Operation — so counting costs a few dictionary lookups per record, not an ECS
mapping.

Besides workloads, records are counted per *operation family*: the shapes Teams admin changes have been
logged in over the years. When one family goes quiet while another keeps arriving, a rule written for
the first one is probably blind, and the health summary can say so with evidence.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import stringzilla

from detection.health.counters import (
    MAX_NAME_CHARS,
    OTHER,
    PIPELINE_TENANT,
    RECORDS,
    Counters,
    Seen,
    bounded_name,
)
from detection.health.inputs import Pattern, RuleInputs
from detection.sources import BodyError, Limits, decode_json, decompress

# Most tenants one batch may create deltas for; the rest are counted together under OTHER.
MAX_TENANTS_PER_BATCH = 100
UNKNOWN_TENANT = "unknown-tenant"  # as alerts name a record without OrganizationId

_CMDLET = re.compile(r"[A-Z][a-z]+-Cs[A-Z]")
_CATALOG = frozenset({"AppPublishedToCatalog", "AppUpdatedInCatalog", "AppDeletedFromCatalog",
                      "DeletedAllOrganizationApps"})
_INSTALLS = frozenset({"AppInstalled", "AppUpgraded", "AppUninstalled"})

# Operation families, in the words the health summary uses.
TENANT_SETTING = "TeamsTenantSettingChanged"
ADMIN_ACTION = "TeamsAdminAction"
CMDLETS = "Teams PowerShell cmdlets (Set-Cs*, New-Cs*, ...)"
CATALOG = "Teams app catalog changes (App*Catalog)"
INSTALLS = "Teams app installs (AppInstalled, AppUpgraded, ...)"
# Families that carry Teams admin configuration changes: each may replace another as Microsoft changes
# how it logs, which is the evidence a drift finding quotes.
ADMIN_CHANGE_FAMILIES = (TENANT_SETTING, ADMIN_ACTION, CMDLETS)


def family_of(operation: str) -> str | None:
    if operation == TENANT_SETTING:
        return TENANT_SETTING
    if operation == ADMIN_ACTION:
        return ADMIN_ACTION
    if operation in _CATALOG:
        return CATALOG
    if operation in _INSTALLS:
        return INSTALLS
    if _CMDLET.match(operation):
        return CMDLETS
    return None


@dataclass(frozen=True)
class Watch:
    """The operations the loaded rules need (see inputs.py), each counted under its pattern's text."""

    patterns: tuple[Pattern, ...] = ()

    @classmethod
    def of(cls, inputs: Iterable[RuleInputs]) -> Watch:
        unique = {p for i in inputs for p in i.actions}
        return cls(tuple(sorted(unique, key=lambda p: p.text)))

    @cached_property
    def _exact(self) -> frozenset[str]:
        return frozenset(p.text for p in self.patterns if p.segments is None)

    @cached_property
    def _wild(self) -> tuple[Pattern, ...]:
        return tuple(p for p in self.patterns if p.segments is not None)

    def keys_for(self, action: str) -> list[str]:
        keys = [action] if action in self._exact else []
        keys.extend(p.text for p in self._wild if p.matches(action))
        return keys


Triple = tuple[str, str, str]  # (tenant, workload, operation) of one record


def census_of_records(records: Iterable[Mapping[str, Any]]) -> Counter[Triple]:
    """How many records of each (tenant, workload, operation) a list of raw records holds."""
    return Counter(
        (_tenant_of(raw.get("OrganizationId")), bounded_name(raw.get("Workload")),
         _operation_of(raw.get("Operation")))
        for raw in records)


def census_of_body(text: bytes, limits: Limits) -> Counter[Triple]:
    """The same census of one decompressed body, mostly without parsing it.

    The handler counts every body, including the many the prefilter never parses, so parsing them
    all here would cost more than detection itself. The three keys are found whatever the producer's
    layout (pretty-printed, NDJSON, envelopes, RawEventData as an escaped JSON string), and paired in
    order, since every record holds each key once. A body where the three counts disagree (a record
    without one, a key nested somewhere) is parsed properly.

    A key with one value in the whole body (its tenant, usually its workload) is read at its first two
    matches and then only counted (see `_column`), and pairing needs just the keys whose values vary.
    """
    columns = [_column(key, text) for key in _KEYS]
    if not columns[0].n == columns[1].n == columns[2].n:
        return census_of_records(r.raw for r in decode_json(text, limits).records)
    varying = [column.values for column in columns if column.single is None]
    found: Counter[tuple[bytes, ...]] = (Counter(zip(*varying, strict=True)) if varying
                                         else Counter({(): columns[0].n}))
    census: Counter[Triple] = Counter()
    for combination, n in found.items():
        picked = iter(combination)
        t, w, o = (next(picked) if column.single is None else column.single for column in columns)
        # Added, not assigned: spellings that differ only in case are one tenant.
        census[(_tenant_of(t.decode("ascii", "replace")), bounded_name(w.decode("ascii", "replace")),
                _operation_of(o.decode("ascii", "replace")))] += n
    return census


def census_of_bodies(bodies: Iterable[bytes], limits: Limits) -> Counter[Triple]:
    """The census of a batch; bodies that cannot be decompressed are the engine's skips, not ours."""
    total: Counter[Triple] = Counter()
    for body in bodies:
        try:
            total.update(census_of_body(decompress(body, limits), limits))
        except BodyError:
            continue
    return total


def observe(
    census: Counter[Triple],
    *,
    now: datetime,
    watch: Watch,
    action_of: Callable[[str], str] = lambda operation: operation,
) -> dict[str, Counters]:
    """A batch's census → one counters delta per tenant: workloads, operation families, watched
    operations, all stamped with the batch's arrival time.

    `action_of` turns a raw Operation into the `event.action` value rules compare with (Elastic renames
    a few), so watched operations are counted under the names the rules use.
    """
    per_tenant: dict[str, _Tally] = {}
    for (tenant, workload, operation), n in census.items():
        tally = per_tenant.get(tenant)
        if tally is None:
            if len(per_tenant) >= MAX_TENANTS_PER_BATCH:
                tenant = OTHER
                tally = per_tenant.get(tenant)
            if tally is None:
                tally = per_tenant[tenant] = _Tally()
        tally.records += n
        tally.workloads[workload] = tally.workloads.get(workload, 0) + n
        family = family_of(operation)
        if family is not None:
            tally.families[family] = tally.families.get(family, 0) + n
        for key in watch.keys_for(action_of(operation)):
            tally.operations[key] = tally.operations.get(key, 0) + n
    return {tenant: tally.freeze(tenant, now, watch) for tenant, tally in per_tenant.items()}


def count(pairs: Iterable[tuple[str | None, str]], *, amount: int = 1) -> dict[str, Counters]:
    """Named counters per tenant from (tenant_id, counter name) pairs: alerts, deliveries, skips."""
    return tally((tenant_id, name, amount) for tenant_id, name in pairs)


def tally(items: Iterable[tuple[str | None, str, int]]) -> dict[str, Counters]:
    """Named counters per tenant from (tenant_id, counter name, n); no tenant is the pipeline's.

    Tenant ids are keyed the way records' OrganizationId is, so a tenant's alerts and deliveries land
    in the same counters as its records, whatever case the id was written in."""
    tallies: dict[str, dict[str, int]] = {}
    for tenant_id, name, n in items:
        if not n:
            continue
        tenant = _tenant_of(tenant_id) if tenant_id else PIPELINE_TENANT
        counts = tallies.setdefault(tenant, {})
        counts[name] = counts.get(name, 0) + n
    return {tenant: Counters(tenant, counts) for tenant, counts in tallies.items()}


def with_outcomes(deltas: Mapping[str, Counters], outcomes: Mapping[str, Counters], *,
                  limit: int = MAX_TENANTS_PER_BATCH) -> dict[str, Counters]:
    """A batch's census deltas plus its outcomes, still at most `limit` tenants (plus OTHER and the
    pipeline) so the batch stays a bounded number of writes.

    A tenant the census already has keeps its outcomes; a new one takes a free place while there is
    one, the rest are counted together under OTHER, as `observe` does with records."""
    room = limit - sum(1 for tenant in deltas if tenant not in (OTHER, PIPELINE_TENANT))
    placed: list[dict[str, Counters]] = []
    for tenant, counters in sorted(outcomes.items()):
        if tenant not in deltas and tenant not in (OTHER, PIPELINE_TENANT):
            if room > 0:
                room -= 1
            else:
                tenant = OTHER
                counters = Counters(OTHER, counters.counts, counters.workloads, counters.families,
                                    counters.operations)
        placed.append({tenant: counters})
    return combine(deltas, *placed)


def combine(*deltas: Mapping[str, Counters]) -> dict[str, Counters]:
    """Several per-tenant deltas of one batch folded into one per tenant (still one write each)."""
    out: dict[str, Counters] = {}
    for delta in deltas:
        for tenant, counters in delta.items():
            current = out.get(tenant)
            out[tenant] = counters if current is None else current.merge(counters)
    return out


class _Tally:
    """Mutable per-tenant tallies while one batch is counted; frozen into Counters at the end."""

    __slots__ = ("families", "operations", "records", "workloads")

    def __init__(self) -> None:
        self.records = 0
        self.workloads: dict[str, int] = {}
        self.families: dict[str, int] = {}
        self.operations: dict[str, int] = {}

    def freeze(self, tenant: str, now: datetime, watch: Watch) -> Counters:
        def seen(counts: dict[str, int]) -> dict[str, Seen]:
            return {name: Seen(n, now, now) for name, n in counts.items()}

        operations = seen(self.operations)
        # Every watched operation is recorded, seen or not, so the store knows since when it has been
        # looked for: absence is only evidence after a whole window of looking.
        for pattern in watch.patterns:
            operations.setdefault(pattern.text, Seen(0, now, None))
        return Counters(tenant, {RECORDS: self.records}, seen(self.workloads), seen(self.families),
                        operations)


def _tenant_of(value: Any) -> str:
    if isinstance(value, str) and value.strip():
        return bounded_name(value.lower())
    return UNKNOWN_TENANT


def _operation_of(value: Any) -> str:
    return value[:MAX_NAME_CHARS] if isinstance(value, str) else ""


def _key(name: bytes) -> re.Pattern[bytes]:
    # "Name": "value", also as escaped inside a JSON string (\"Name\":\"value\"). Values of these keys
    # never hold quotes or backslashes; one that is cut off or too long does not match, so its body's
    # counts disagree and it is parsed instead.
    return re.compile(rb'"' + name + rb'\\?"[ \t\r\n]*:[ \t\r\n]*\\?"([^"\\]{0,%d})\\?"' % MAX_NAME_CHARS)


@dataclass(frozen=True)
class _Key:
    """One counted key: its value pattern and the text every match of it starts with (`"Name`,
    which cannot overlap itself: it holds one quote)."""

    pattern: re.Pattern[bytes]
    prefix: bytes

    @classmethod
    def of(cls, name: bytes) -> _Key:
        return cls(_key(name), b'"' + name)

    def matches(self, text: bytes) -> Iterator[re.Match[bytes]]:
        """What `pattern.finditer` gives, trying the pattern only where SIMD search finds the prefix
        instead of at every byte."""
        match = self.pattern.match
        at = stringzilla.find(text, self.prefix)
        while at >= 0:
            found = match(text, at)
            at = stringzilla.find(text, self.prefix, at + 1 if found is None else found.end())
            if found is not None:
                yield found


@dataclass(frozen=True)
class _Column:
    """What `pattern.findall` gives for one key in one body: `n` matches, all `single` when that is
    set, else the matched `values` in order."""

    n: int
    single: bytes | None = None
    values: list[bytes] | None = None


def _column(key: _Key, text: bytes) -> _Column:
    """One key's values in a body, only counted when the key has a single value there.

    When the first two matches are the same text (key and value, e.g. `"OrganizationId":"<id>"`) and
    it occurs, without overlaps, as often as the key's prefix, every prefix begins a copy of it, so
    the scan would find exactly that many matches, all with that value (the pattern reads nothing
    outside its match). Otherwise (several values, an escape, a prefix that is no match) the rest of
    the body is scanned.
    """
    matches = key.matches(text)
    first = next(matches, None)
    if first is None:
        return _Column(0, values=[])
    second = next(matches, None)
    if second is None:
        return _Column(1, single=first.group(1))
    whole = first.group(0)
    if second.group(0) == whole:
        n = stringzilla.count(text, key.prefix)
        if stringzilla.count(text, whole) == n:
            return _Column(n, single=first.group(1))
    values = [first.group(1), second.group(1)]
    values.extend(found.group(1) for found in matches)
    return _Column(len(values), values=values)


_KEYS = (_Key.of(b"OrganizationId"), _Key.of(b"Workload"), _Key.of(b"Operation"))
