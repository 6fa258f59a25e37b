"""The KQL grammar and the one LALR parser built from it.

The grammar follows Kibana's kuery grammar, the one Elastic's detection engine runs, so a rule that
parses there parses here with the same meaning:

* precedence `or` < `and` < `not` < parentheses; `and`/`or`/`not` in any letter case;
* `and`/`or`/`not` are keywords only as whole words followed by whitespace (or by the end of the
  query, `(`, `)`, `}` or `"`); the contextual lexer makes a keyword that cannot appear at a position
  an ordinary word, so `f:or` is the value "or" just as in Kibana;
* an unquoted value is a run of words: `f:S3 Browser` is the single value "S3 Browser" (Kibana keeps
  the inner whitespace, we rebuild it from the source text);
* escapes are resolved later (`parser.py`), the tokens here only delimit them.

Deliberate differences: a keyword may be directly followed by `(` or `"`, and a field's value may start
with `not` outside parentheses (`f:not x`, as Elastic's detection-rules tooling accepts) — both accept
queries Kibana rejects without changing any query it accepts. A dangling keyword (`a:b and`,
`f:(a or)`) is a syntax error here, where Kibana would quietly read the value "b and" or "a or".
"""

from __future__ import annotations

from functools import cache

from lark import Lark

SPECIAL_CHARACTERS = '\\():<>"*{}'

GRAMMAR = r"""
start: or_query?

?or_query: and_query (_OR and_query)*
?and_query: not_query (_AND not_query)*
?not_query: _NOT not_query -> not_query
          | sub_query
?sub_query: "(" or_query ")"
          | nested
          | range
          | field_value
          | free_text

nested: field ":" "{" or_query "}"
range: field RANGE_OP literal
field_value: field ":" not_values
free_text: literal

?or_values: and_values (_OR and_values)*
?and_values: not_values (_AND not_values)*
?not_values: _NOT not_values -> value_not
           | "(" or_values ")"
           | literal

field: literal
?literal: QUOTED -> quoted
        | WORD+ -> unquoted

RANGE_OP: "<=" | ">=" | "<" | ">"

// A quoted string: \" and \\ are escapes, \t \r \n \uXXXX too; any other backslash is literal.
QUOTED: /"(?:\\[\\"]|\\[trn]|\\u[0-9a-fA-F]{4}|\\(?![\\"])|[^"\\])*"/

// An unquoted word: no whitespace, specials only escaped, `*` is the wildcard.
WORD: /(?:[^\s\\():<>"*{}]|\*|\\[\\():<>"*{}]|\\[trn]|\\u[0-9a-fA-F]{4}|\\(?i:or|and|not))+/

_OR.2: /(?i:or)(?=[\s()"}]|$)/
_AND.2: /(?i:and)(?=[\s()"}]|$)/
_NOT.2: /(?i:not)(?=[\s()"}]|$)/

%ignore /\s+/
"""

# Terminal names as a reader would call them, for syntax error messages.
TERMINAL_NAMES = {
    "_OR": "'or'",
    "_AND": "'and'",
    "_NOT": "'not'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COLON": "':'",
    "RANGE_OP": "a range operator (< <= > >=)",
    "QUOTED": "a quoted value",
    "WORD": "a value",
    "$END": "the end of the query",
}


@cache
def kql_parser() -> Lark:
    """Build the parser once per process: table construction is the expensive part."""
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)
