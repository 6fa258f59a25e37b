"""KQL text → the frozen syntax tree of `ast.py`, with syntax errors a person can act on.

Escapes are resolved here, in Kibana's order of preference, so the tree holds values as they will be
compared: `\\n` is a newline, `\\*` a literal star (an unquoted `*` becomes a wildcard segment break),
`\\u0041` is "A". Unquoted values made of several words keep the whitespace written between them.
"""

from __future__ import annotations

from typing import Any

from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from .ast import (
    And,
    Exists,
    Field,
    FreeText,
    Match,
    MatchAll,
    Nested,
    Node,
    Not,
    Or,
    Range,
    Value,
    ValueAnd,
    ValueExpr,
    ValueNot,
    ValueOr,
)
from .grammar import SPECIAL_CHARACTERS, TERMINAL_NAMES, kql_parser

KEYWORD_LITERALS = frozenset({"true", "false", "null"})
MAX_DEPTH = 100  # levels of nesting (parentheses that group, not, nested queries, value lists)
_ESCAPED_WHITESPACE = {"t": "\t", "r": "\r", "n": "\n"}
_HEX = frozenset("0123456789abcdefABCDEF")
_STAR = object()  # marks an unescaped `*` while decoding an unquoted word


class KqlSyntaxError(ValueError):
    """A query that is not valid KQL; `line` and `column` are 1-based, str() shows a caret under the spot."""

    def __init__(self, message: str, query: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.query = query
        self.line = line
        self.column = column

    def __str__(self) -> str:
        lines = self.query.split("\n")  # the same line breaks `line` was counted with
        text = lines[self.line - 1].rstrip("\r") if 0 < self.line <= len(lines) else ""
        # Keep tabs in the padding so the caret lines up however the terminal renders them.
        pad = "".join("\t" if ch == "\t" else " " for ch in text[: self.column - 1])
        return f"{self.message} (line {self.line}, column {self.column})\n{text}\n{pad}^"


def parse(query: str) -> Node:
    """Parse a KQL query; an empty (or all-whitespace) query matches everything, as in Kibana."""
    if not isinstance(query, str):
        raise TypeError(f"KQL query must be a string, not {type(query).__name__}")
    try:
        tree = kql_parser().parse(query)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, query) from None
    try:
        node = _Builder(query).transform(tree)
    except VisitError as exc:  # the builder's own checks raise KqlSyntaxError inside lark's visitor
        if isinstance(exc.orig_exc, KqlSyntaxError):
            raise exc.orig_exc from None
        if isinstance(exc.orig_exc, RecursionError):
            raise _too_deep(query) from None
        raise
    except RecursionError:
        raise _too_deep(query) from None
    if _depth(node) > MAX_DEPTH:
        raise _too_deep(query)
    return node


def _too_deep(query: str) -> KqlSyntaxError:
    # Compiled predicates recurse once per level, so the limit also keeps evaluation within the stack.
    return KqlSyntaxError(f"query nests more than {MAX_DEPTH} levels deep", query, 1, 1)


def _depth(node: Node | ValueExpr) -> int:
    """Nesting depth of a tree, computed without recursion (the tree may be deeper than the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(current, And | Or | ValueOr | ValueAnd):
            stack.extend((item, level + 1) for item in current.items)
        elif isinstance(current, Not | ValueNot):
            stack.append((current.item, level + 1))
        elif isinstance(current, Nested):
            stack.append((current.query, level + 1))
        elif isinstance(current, Match | FreeText):
            stack.append((current.value, level + 1))
    return deepest


def _position(query: str, offset: int) -> tuple[int, int]:
    line = query.count("\n", 0, offset) + 1
    column = offset - (query.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _error_at(message: str, query: str, offset: int) -> KqlSyntaxError:
    line, column = _position(query, offset)
    return KqlSyntaxError(message, query, line, column)


def _expected(names: set[str] | frozenset[str]) -> str:
    described = sorted({TERMINAL_NAMES.get(name, name) for name in names})
    return ", ".join(described) if described else "nothing"


def _syntax_error(exc: UnexpectedInput, query: str) -> KqlSyntaxError:
    if isinstance(exc, UnexpectedCharacters):
        offset = exc.pos_in_stream
        char = query[offset]
        if char == '"':
            message = "unterminated quoted string (a closing '\"' is missing)"
        elif char == "\\":
            message = (
                f"invalid escape '{query[offset:offset + 2]}' in an unquoted value "
                f"(escapable: {' '.join(SPECIAL_CHARACTERS)} \\t \\r \\n \\uXXXX); quote the value instead"
            )
        else:
            message = f"unexpected character {char!r}"
        return _error_at(message, query, offset)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        message = f"unexpected {token.value!r}, expected {_expected(exc.expected)}"
        return _error_at(message, query, token.start_pos)
    expected = getattr(exc, "expected", None) or ()
    return _error_at(f"unexpected end of query, expected {_expected(set(expected))}", query, len(query))


def _decode_quoted(body: str) -> str:
    """Resolve a quoted string's escapes; a backslash before anything else stays a backslash."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n:
            nxt = body[i + 1]
            if nxt in _ESCAPED_WHITESPACE:
                out.append(_ESCAPED_WHITESPACE[nxt])
                i += 2
                continue
            if nxt == "u" and _is_hex4(body, i + 2):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            if nxt in '\\"':
                out.append(nxt)
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _is_hex4(text: str, start: int) -> bool:
    chunk = text[start : start + 4]
    return len(chunk) == 4 and all(c in _HEX for c in chunk)


def _decode_word(word: str, out: list[Any]) -> None:
    """Append a word's characters to `out`, with `_STAR` for each unescaped `*`.

    The grammar only lets valid escapes into a word, so every backslash starts one of them.
    """
    i, n = 0, len(word)
    while i < n:
        ch = word[i]
        if ch == "*":
            out.append(_STAR)
            i += 1
        elif ch != "\\":
            out.append(ch)
            i += 1
        else:
            nxt = word[i + 1]
            if nxt in _ESCAPED_WHITESPACE:
                out.append(_ESCAPED_WHITESPACE[nxt])
                i += 2
            elif nxt in SPECIAL_CHARACTERS:
                out.append(nxt)
                i += 2
            elif nxt == "u" and _is_hex4(word, i + 2):
                out.append(chr(int(word[i + 2 : i + 6], 16)))
                i += 6
            else:  # an escaped keyword: \or \and \not, kept as written
                size = 2 if word[i + 1 : i + 3].lower() == "or" else 3
                out.append(word[i + 1 : i + 1 + size])
                i += 1 + size


def _is_match_all_value(value: ValueExpr) -> bool:
    return isinstance(value, Value) and value.segments is not None and not any(value.segments)


@v_args(inline=True)
class _Builder(Transformer):
    """Turns lark's tree into ast nodes; needs the query text to rebuild multi-word values."""

    def __init__(self, query: str) -> None:
        super().__init__()
        self._query = query

    # -- literals ------------------------------------------------------------------------------------

    def quoted(self, token: Token) -> Value:
        return Value(_decode_quoted(token.value[1:-1]), quoted=True)

    def unquoted(self, *tokens: Token) -> Value:
        chars: list[Any] = []
        previous: Token | None = None
        for token in tokens:
            if previous is not None:
                if previous.value.lower() == "not" and self._query[previous.end_pos].isspace():
                    raise _error_at(
                        "'not' must start a condition (after 'and'/'or' or '('); quote the value to "
                        "search for the word not",
                        self._query,
                        previous.start_pos,
                    )
                chars.append(self._query[previous.end_pos : token.start_pos])
            _decode_word(token.value, chars)
            previous = token
        if _STAR not in chars:
            text = "".join(chars)
            return Value(text, keyword=text in KEYWORD_LITERALS)
        segments: list[str] = []
        current: list[str] = []
        for item in chars:
            if item is _STAR:
                segments.append("".join(current))
                current = []
            else:
                current.append(item)
        segments.append("".join(current))
        return Value("*".join(segments), segments=tuple(segments))

    def field(self, value: Value) -> Field:
        return Field(value.text, value.segments)

    # -- value lists ---------------------------------------------------------------------------------

    def or_values(self, *items: ValueExpr) -> ValueOr:
        return ValueOr(items)

    def and_values(self, *items: ValueExpr) -> ValueAnd:
        return ValueAnd(items)

    def value_not(self, item: ValueExpr) -> ValueNot:
        return ValueNot(item)

    # -- conditions ----------------------------------------------------------------------------------

    def field_value(self, field: Field, value: ValueExpr) -> Node:
        if _is_match_all_value(value):
            if field.is_wildcard and not any(field.segments or ()):
                return MatchAll()
            return Exists(field)
        return Match(field, value)

    def range(self, field: Field, op: Token, value: Value) -> Range:
        return Range(field, op.value, value)

    def nested(self, field: Field, query: Node) -> Nested:
        return Nested(field, query)

    def free_text(self, value: Value) -> Node:
        return MatchAll() if _is_match_all_value(value) else FreeText(value)

    def or_query(self, *items: Node) -> Or:
        return Or(items)

    def and_query(self, *items: Node) -> And:
        return And(items)

    def not_query(self, item: Node) -> Not:
        return Not(item)

    def start(self, query: Node | None = None) -> Node:
        return MatchAll() if query is None else query

