"""Which bodies and records could possibly match a rule, decided before the expensive work.

Parsing every body and mapping every record costs far more than the rules themselves: a tenant's
stream is mostly mail, file and sign-in activity, and a rule usually waits for one rare operation. So
each rule's query is reduced to *requirements* on the raw record: conditions a record must meet for the
query to have any chance, derived only where they are certain.

A requirement is a conjunction of clauses; a clause is a disjunction of atoms; an atom says "the raw
key K holds one of these texts" (or, for a wildcard, "a text containing these pieces"). They come from
`field:value` conditions on ECS fields that `detection.ecs.verbatim_source` declares plain copies of a
raw key (with its renames inverted). Everything else (`not`, ranges, exists, computed fields, free text)
gives no requirement, and an `or` has one only when each branch has one.

Two levels use them:

* Body level, on bytes, nothing parsed: a body none of whose rules' literals occur in it is skipped.
  The bytes of a JSON text can spell a string value differently from the value itself, so a literal
  is only looked for when no spelling can hide it: it must be printable ASCII without `"` or `\\`
  (those are always escaped), and not read as a number or a keyword by the predicates. What can still
  hide it is `\\/` for `/` (the search then runs over the body with those backslashes removed) or a
  `\\u00XX` escape of one of its characters: a body holding such an escape of a character that occurs
  in any literal, or of a backslash (which can build an escape one level down, inside a Defender
  RawEventData string), is parsed in full instead. gzip bodies are searched after decompression;
  RawEventData strings carry the record's values unquoted, so the same search holds for them.
* Record level, on the parsed raw record, before it is mapped to ECS: values are compared exactly,
  so escapes no longer matter, and only records (and rules) that can match reach the mapper.

The result is the same alerts with and without the prefilter: a test proves it on a varied corpus.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from detection.kql.ast import (
    And,
    Match,
    Node,
    Or,
    Value,
    ValueAnd,
    ValueExpr,
    ValueOr,
)

try:  # SIMD substring search; several times faster than bytes.find on JSON full of backslashes and digits
    from stringzilla import find as _simd_find
except ImportError:  # pragma: no cover - the requirement is installed everywhere we run
    _simd_find = None

Find = Callable[..., int]  # find(haystack, needle, start=0) -> index or -1, like bytes.find
DEFAULT_FIND: Find = _simd_find if _simd_find is not None else bytes.find

MAX_CLAUSE_ATOMS = 64  # an `or` wider than this checks so many literals it is cheaper to parse
_NUMERIC_CHARS = frozenset("0123456789+-.eE")
_KEYWORDS = frozenset({"true", "false", "null"})
_MISSING = object()
_SLASH_ESCAPES = re.compile(rb"\\+/")


class Source(Protocol):
    raw_key: str
    renames: Mapping[str, str]


SourceLookup = Callable[[str], Source | None]


def _default_lookup() -> SourceLookup:
    from detection.ecs import verbatim_source

    return verbatim_source


@dataclass(frozen=True)
class Atom:
    """The raw key holds a text in `exact`, or (wildcards) a text containing every one of `pieces`."""

    raw_key: str
    exact: frozenset[str]
    pieces: tuple[str, ...] = ()

    def holds(self, raw: Mapping[str, Any]) -> bool:
        value = raw.get(self.raw_key, _MISSING)
        if value is _MISSING:
            return False  # the ECS field is absent, so the condition on it is false
        if type(value) is not str:
            return True  # numbers, booleans, lists: left to the predicate
        if value in self.exact:
            return True
        if self.pieces:
            return all(piece in value for piece in self.pieces)
        return False

    def literals(self) -> tuple[str, ...]:
        """Texts one of which a body must contain when this atom holds in one of its records."""
        longest = (max(self.pieces, key=len),) if self.pieces else ()
        return tuple(sorted(self.exact)) + longest


Clause = tuple[Atom, ...]  # any atom holds
Requirement = tuple[Clause, ...]  # every clause holds; () = no requirement


# ---- deriving requirements from a query ----

def _wildcard_pattern(segments: Sequence[str]) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(s) for s in segments), re.DOTALL)


def _atom(value: Value, source: Source) -> Atom | None:
    renames = source.renames
    if value.segments is None:
        exact = {value.text, *(raw for raw, ecs in renames.items() if ecs == value.text)}
        return Atom(source.raw_key, frozenset(exact))
    pieces = tuple(s for s in value.segments if s)
    if not pieces:
        return None  # only stars: an existence test
    pattern = _wildcard_pattern(value.segments)
    renamed = frozenset(raw for raw, ecs in renames.items() if pattern.fullmatch(ecs))
    return Atom(source.raw_key, renamed, pieces)


def _either(parts: Iterable[Requirement | None]) -> Requirement | None:
    """An `or`: one clause joining each branch's best clause; none if any branch has none."""
    atoms: list[Atom] = []
    for part in parts:
        if not part:
            return None
        atoms.extend(best_clause(part))
    if len(atoms) > MAX_CLAUSE_ATOMS:
        return None
    return (tuple(dict.fromkeys(atoms)),)


def _both(parts: Iterable[Requirement | None]) -> Requirement | None:
    clauses = tuple(clause for part in parts if part for clause in part)
    return tuple(dict.fromkeys(clauses)) or None


def _value_requirement(expr: ValueExpr, source: Source) -> Requirement | None:
    if isinstance(expr, Value):
        atom = _atom(expr, source)
        return ((atom,),) if atom is not None else None
    if isinstance(expr, ValueOr):
        return _either(_value_requirement(item, source) for item in expr.items)
    if isinstance(expr, ValueAnd):
        return _both(_value_requirement(item, source) for item in expr.items)
    return None  # ValueNot: anything but a value says nothing about what is there


def requirement(node: Node | None, lookup: SourceLookup | None = None) -> Requirement:
    """The clauses a raw record must satisfy for `node` to match its ECS document (() when none)."""
    lookup = lookup or _default_lookup()
    return _requirement(node, lookup) or ()


def _requirement(node: Node | None, lookup: SourceLookup) -> Requirement | None:
    if isinstance(node, Match):
        if node.field.is_wildcard:
            return None
        source = lookup(node.field.name)
        return _value_requirement(node.value, source) if source is not None else None
    if isinstance(node, And):
        return _both(_requirement(item, lookup) for item in node.items)
    if isinstance(node, Or):
        return _either(_requirement(item, lookup) for item in node.items)
    return None  # Not, Exists, Range, Nested, FreeText, MatchAll


# ---- body-level literals ----

def byte_safe(text: str) -> bool:
    """A literal whose every occurrence as a JSON string value shows in the bytes as itself,
    unless spelled with `\\u00XX` or `\\/` (which the body check detects)."""
    if not text or text in _KEYWORDS or set(text) <= _NUMERIC_CHARS:
        return False
    return all(" " <= c <= "~" and c != '"' and c != "\\" for c in text)


def clause_literals(clause: Clause) -> tuple[bytes, ...] | None:
    """The byte literals a body must hold one of, or None when a literal cannot be searched safely.

    A literal containing another of the same clause is dropped: wherever it occurs, the shorter does.
    """
    texts = set(text for atom in clause for text in atom.literals())
    if not all(byte_safe(text) for text in texts):
        return None
    kept = sorted(t for t in texts if not any(o != t and o in t for o in texts))
    return tuple(text.encode("ascii") for text in kept)


def _strength(clause: Clause) -> tuple[bool, int, int]:
    """How likely a clause is to reject a body: searchable first, then by its shortest literal."""
    literals = clause_literals(clause)
    if literals is None:
        return (False, 0, -len(clause))
    return (True, min(len(b) for b in literals), -len(literals))


def best_clause(req: Requirement) -> Clause:
    return max(req, key=_strength)


def _index_clause(req: Requirement) -> Clause | None:
    """A clause of exact texts on one raw key, for the record-level lookup table (the strongest)."""
    candidates = [c for c in req if len({a.raw_key for a in c}) == 1 and not any(a.pieces for a in c)]
    return max(candidates, key=_strength) if candidates else None


# ---- the prefilter ----

class Prefilter:
    """The requirements of a set of rules, ready to test bodies and records."""

    def __init__(self, rules: Sequence[Any], *, lookup: SourceLookup | None = None,
                 find: Find = DEFAULT_FIND) -> None:
        lookup = lookup or _default_lookup()
        self.rules = tuple(rules)
        self.find = find
        self.requirements: tuple[Requirement, ...] = tuple(requirement(r.ast, lookup) for r in self.rules)
        self._plan_bodies()
        self._plan_records()

    # -- bodies --

    def _plan_bodies(self) -> None:
        per_rule = [[lits for lits in (clause_literals(c) for c in req) if lits is not None]
                    for req in self.requirements]
        # Some rule can match a body no literal rules out: every body is parsed.
        self.parse_all = not all(per_rule)
        # A clause several rules share is searched once per body and can rule them all out at once, so
        # shared clauses go first; then the clause with the longest shortest literal (likely rarest).
        shared = Counter(lits for clauses in per_rule for lits in set(clauses))
        self.literal_sets = tuple(dict.fromkeys(
            tuple(sorted(set(clauses), key=lambda lits: (-shared[lits], -min(map(len, lits)), lits)))
            for clauses in per_rule))
        chars = {chr(b) for clauses in self.literal_sets for lits in clauses for lit in lits for b in lit}
        # An escaped backslash can build an escape one level down (a RawEventData string): a hazard too.
        self.hidden_codes = frozenset(ord(c) for c in chars | {"\\"})
        self.slash_literals = frozenset(
            lit for clauses in self.literal_sets for lits in clauses for lit in lits if b"/" in lit)

    def body_may_match(self, data: bytes) -> bool:
        """False only when no rule can match any record of this (decompressed) body."""
        if self.parse_all:
            return True
        if not self.literal_sets:
            return False  # no rules
        find = self.find
        seen: dict[bytes, bool] = {}
        unslashed: bytes | None = None
        for clauses in self.literal_sets:
            for literals in clauses:
                found = False
                for literal in literals:
                    hit = seen.get(literal)
                    if hit is None:
                        hit = find(data, literal) >= 0
                        if not hit and literal in self.slash_literals:
                            if unslashed is None:
                                unslashed = self._unslash(data)
                            hit = unslashed is not data and find(unslashed, literal) >= 0
                        seen[literal] = hit
                    if hit:
                        found = True
                        break
                if not found:
                    break
            else:
                return True
        return self.may_hide_literals(data)

    def _unslash(self, data: bytes) -> bytes:
        """The body with every run of backslashes before a `/` removed. That leaves each literal's
        plain occurrences intact (no literal holds a backslash) and makes the escaped ones plain: `\\/`,
        and also `\\\\/` or `\\\\\\/`, which is how an escaped slash of the JSON text inside a Defender
        RawEventData string reads one level up."""
        return _SLASH_ESCAPES.sub(b"/", data) if self.find(data, b"\\/") >= 0 else data

    def may_hide_literals(self, data: bytes) -> bool:
        """True when a `\\u00XX` escape in the body could spell a character of some literal."""
        find = self.find
        position = find(data, b"\\u00")
        while position >= 0:
            digits = data[position + 4: position + 6]
            if len(digits) == 2 and all(d in b"0123456789abcdefABCDEF" for d in digits) \
                    and int(digits, 16) in self.hidden_codes:
                return True
            position = find(data, b"\\u00", position + 4)
        return False

    # -- records --

    def _plan_records(self) -> None:
        """A lookup table raw key → text → rules, from each rule's strongest exact clause on one key."""
        self._tables: dict[str, dict[str, list[int]]] = {}
        self._on_key: dict[str, list[int]] = {}
        unindexed: list[int] = []
        for position, req in enumerate(self.requirements):
            clause = _index_clause(req)
            if clause is None:
                unindexed.append(position)
                continue
            key = clause[0].raw_key
            table = self._tables.setdefault(key, {})
            self._on_key.setdefault(key, []).append(position)
            for text in {t for atom in clause for t in atom.exact}:
                table.setdefault(text, []).append(position)
        self._unindexed = tuple(unindexed)
        self.checks_records = all(self.requirements)

    def rules_for(self, raw: Mapping[str, Any]) -> tuple[Any, ...]:
        """The rules whose requirements this raw record meets (the others cannot match it)."""
        positions: list[int] = list(self._unindexed)
        for key, table in self._tables.items():
            value = raw.get(key, _MISSING)
            if value is _MISSING:
                continue
            if type(value) is str:
                positions.extend(table.get(value, ()))
            else:
                positions.extend(self._on_key[key])
        if not positions:
            return ()
        requirements = self.requirements
        return tuple(self.rules[i] for i in sorted(set(positions)) if _meets(raw, requirements[i]))

    def record_may_match(self, raw: Mapping[str, Any]) -> bool:
        return bool(self.rules_for(raw))


def _meets(raw: Mapping[str, Any], req: Requirement) -> bool:
    for clause in req:
        for atom in clause:
            if atom.holds(raw):
                break
        else:
            return False
    return True

