"""The parser: KQL text → the query tree, and syntax errors that point at the problem."""

import pytest

from detection.kql import KqlSyntaxError, parse
from detection.kql.ast import (
    And,
    Exists,
    Field,
    FreeText,
    Match,
    MatchAll,
    Nested,
    Not,
    Or,
    Range,
    Value,
    ValueAnd,
    ValueNot,
    ValueOr,
)


def m(field: str, text: str, **kw) -> Match:
    return Match(Field(field), Value(text, **kw))


# -- structure and precedence -------------------------------------------------------------------------


def test_or_binds_looser_than_and():
    assert parse("a:1 or b:2 and c:3") == Or((m("a", "1"), And((m("b", "2"), m("c", "3")))))


def test_not_binds_tighter_than_and():
    assert parse("not a:1 and b:2") == And((Not(m("a", "1")), m("b", "2")))


def test_parentheses_override_precedence():
    assert parse("(a:1 or b:2) and c:3") == And((Or((m("a", "1"), m("b", "2"))), m("c", "3")))
    assert parse("not (a:1 or b:2)") == Not(Or((m("a", "1"), m("b", "2"))))


def test_chains_are_flat():
    assert parse("a:1 and b:2 and c:3") == And((m("a", "1"), m("b", "2"), m("c", "3")))


@pytest.mark.parametrize(
    "query",
    ["a:1 AND b:2 OR NOT c:3", "a:1 And b:2 Or Not c:3", "a:1 aNd b:2 oR nOT c:3"],
)
def test_keywords_in_any_case(query):
    # Kibana's grammar matches 'and'/'or'/'not' case-insensitively.
    assert parse(query) == parse("a:1 and b:2 or not c:3")


def test_words_starting_with_keywords_are_values():
    assert parse("f:orange and g:android and h:nothing") == And(
        (m("f", "orange"), m("g", "android"), m("h", "nothing"))
    )


def test_keyword_where_no_keyword_fits_is_a_value():
    # As in Kibana: after ':' an operator cannot follow, so `or` is the value "or".
    assert parse("f:or and g:and") == And((m("f", "or"), m("g", "and")))


def test_multi_line_query_with_indentation():
    query = "event.dataset:o365.audit and\n    (\n\tf:1 or\n        g:2\n    )\n"
    assert parse(query) == And((m("event.dataset", "o365.audit"), Or((m("f", "1"), m("g", "2")))))


def test_empty_query_matches_all():
    assert parse("") == MatchAll()
    assert parse("  \n ") == MatchAll()
    assert parse("*") == MatchAll()
    assert parse("*:*") == MatchAll()


# -- conditions ---------------------------------------------------------------------------------------


def test_value_list():
    assert parse("f:(a or b and not c)") == Match(
        Field("f"), ValueOr((Value("a"), ValueAnd((Value("b"), ValueNot(Value("c"))))))
    )


def test_value_list_nested_parentheses():
    assert parse("f:(* and not (a or b))") == Match(
        Field("f"),
        ValueAnd((Value("*", segments=("", "")), ValueNot(ValueOr((Value("a"), Value("b")))))),
    )


def test_not_directly_before_a_value():
    assert parse("f:not a") == Match(Field("f"), ValueNot(Value("a")))


def test_nested_query():
    assert parse("f:{ a:1 and not b:2 }") == Nested(Field("f"), And((m("a", "1"), Not(m("b", "2")))))


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_ranges(op):
    assert parse(f"count {op} 10") == Range(Field("count"), op, Value("10"))
    assert parse(f"count{op}10") == Range(Field("count"), op, Value("10"))


def test_range_with_quoted_date():
    assert parse('@timestamp >= "2024-01-01T00:00:00Z"') == Range(
        Field("@timestamp"), ">=", Value("2024-01-01T00:00:00Z", quoted=True)
    )


def test_exists():
    assert parse("f:*") == Exists(Field("f"))
    assert parse("f : *") == Exists(Field("f"))
    assert parse("f:(*)") == Exists(Field("f"))


def test_free_text():
    assert parse("hello") == FreeText(Value("hello"))
    assert parse('"hello world"') == FreeText(Value("hello world", quoted=True))
    assert parse("hel*") == FreeText(Value("hel*", segments=("hel", "")))


def test_wildcard_field_name():
    assert parse("o365.audit.*:x") == Match(Field("o365.audit.*", ("o365.audit.", "")), Value("x"))
    assert parse('"o365.audit.*":x') == m("o365.audit.*", "x")  # quoted: never a wildcard


def test_space_around_colon():
    assert parse("f : a") == m("f", "a")


# -- values -------------------------------------------------------------------------------------------


def test_quoted_escapes():
    assert parse(r'f:"say \"hi\" \\ there"') == m("f", 'say "hi" \\ there', quoted=True)
    assert parse(r'f:"a\tb\nc\rd"') == m("f", "a\tb\nc\rd", quoted=True)
    assert parse(r'f:"\u0041\u0000"') == m("f", "A\x00", quoted=True)


def test_backslash_before_other_characters_stays_in_quoted_strings():
    # Windows account names in Elastic's rules rely on this.
    assert parse(r'f:"NT AUTHORITY\SYSTEM"') == m("f", "NT AUTHORITY\\SYSTEM", quoted=True)


def test_quoted_string_keeps_specials_and_spaces():
    assert parse('f:"a (b) : <c> {d} or not e  "') == m("f", "a (b) : <c> {d} or not e  ", quoted=True)


def test_quoted_star_is_literal():
    assert parse('f:"a*"') == m("f", "a*", quoted=True)
    assert parse('f:"*"') == m("f", "*", quoted=True)


def test_unquoted_escapes():
    assert parse(r"f:a\:b\(c\)\<d\>\"e\{f\}\\g") == m("f", 'a:b(c)<d>"e{f}\\g')
    assert parse(r"f:a\tb\nc\rd") == m("f", "a\tb\nc\rd")
    assert parse(r"f:\u0041b") == m("f", "Ab")
    assert parse(r"f:\or \AND") == m("f", "or AND")
    # Kibana tries the whitespace escapes first: `\not` is a newline followed by "ot".
    assert parse(r"f:\not") == m("f", "\not")


def test_escaped_star_is_literal():
    assert parse(r"f:a\*b") == m("f", "a*b")
    assert parse(r"f:a\**") == Match(Field("f"), Value("a**", segments=("a*", "")))


def test_wildcard_segments():
    assert parse("f:*a*b*") == Match(Field("f"), Value("*a*b*", segments=("", "a", "b", "")))


def test_question_mark_is_literal():
    assert parse("f:a?c") == m("f", "a?c")


def test_unquoted_words_form_one_value():
    # Kibana reads a run of words as one value and keeps the whitespace between them.
    assert parse("f:S3  Browser and g:x") == And((m("f", "S3  Browser"), m("g", "x")))
    wildcard = Value("*S3 Browser*", segments=("", "S3 Browser", ""))
    assert parse("f:*S3 Browser*") == Match(Field("f"), wildcard)


@pytest.mark.parametrize("word", ["true", "false", "null"])
def test_keyword_literals(word):
    assert parse(f"f:{word}") == m("f", word, keyword=True)
    assert parse(f'f:"{word}"') == m("f", word, quoted=True)


def test_capitalised_true_is_an_ordinary_string():
    assert parse("f:True") == m("f", "True")
    assert parse("f:NULL") == m("f", "NULL")


# -- syntax errors ------------------------------------------------------------------------------------


def error_for(query: str) -> KqlSyntaxError:
    with pytest.raises(KqlSyntaxError) as caught:
        parse(query)
    return caught.value


def test_error_is_a_value_error_with_position():
    err = error_for("a:b and (c:d")
    assert isinstance(err, ValueError)
    assert (err.line, err.column) == (1, 13)
    assert "unexpected end of query" in err.message


def test_error_position_in_multi_line_query():
    err = error_for("a:b and\n    (c:d or\n     e:)\n")
    assert (err.line, err.column) == (3, 8)
    assert str(err) == (
        "unexpected ')', expected '(', 'not', '{', a quoted value, a value (line 3, column 8)\n"
        "     e:)\n"
        "       ^"
    )


def test_caret_keeps_tabs_aligned():
    err = error_for("a:b and\n\t\t)")
    assert (err.line, err.column) == (2, 3)
    assert str(err).splitlines()[-2:] == ["\t\t)", "\t\t^"]


def test_unterminated_quote():
    err = error_for('a:b and c:"open')
    assert (err.line, err.column) == (1, 11)
    assert "unterminated quoted string" in err.message
    err = error_for(r'c:"ends with escaped quote\"')
    assert "unterminated" in err.message


def test_invalid_unquoted_escape():
    err = error_for(r"path:C\Windows")
    assert (err.line, err.column) == (1, 7)
    assert "invalid escape '\\W'" in err.message


def test_dangling_operator_at_end():
    err = error_for("a:b and")
    assert (err.line, err.column) == (1, 8)
    assert "unexpected end of query" in str(err)


def test_not_inside_a_value_is_an_error():
    err = error_for("f:a not b")
    assert (err.line, err.column) == (1, 5)
    assert "'not'" in err.message


@pytest.mark.parametrize(
    "query, column",
    [
        ("a:b c:d", 6),  # two conditions without and/or
        ("f:", 3),
        ("()", 2),
        ("f:{}", 4),
        ("a:b)", 4),
        ("f >= ", 6),
        ("f:(a or)", 8),  # Kibana would read the value "a or"
        ("f:{a:b and}", 11),
        ("f < *a and", 11),
    ],
)
def test_invalid_queries(query, column):
    err = error_for(query)
    assert err.line == 1
    assert err.column == column


def test_non_string_query_is_a_type_error():
    with pytest.raises(TypeError):
        parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "template",
    ["{0}a:1", "a:{{{1}b:1{2}}}"],
)
def test_nesting_is_limited_instead_of_exhausting_the_stack(template):
    shallow = template.format("not " * 40, "c:{" * 40, "}" * 40)
    assert parse(shallow)
    for levels in (150, 5000):  # past the limit, and past what the stack could hold
        deep = template.format("not " * levels, "c:{" * levels, "}" * levels)
        err = error_for(deep)
        assert "levels deep" in err.message
        assert (err.line, err.column) == (1, 1)


def test_deep_parentheses_that_only_group_are_fine():
    assert parse("(" * 2000 + "a:1" + ")" * 2000) == m("a", "1")


def test_caret_line_counts_only_newlines():
    err = error_for('a:"x\u2028y" and\r\n)')
    assert (err.line, err.column) == (2, 1)
    assert str(err).splitlines()[-2:] == [")", "^"]
