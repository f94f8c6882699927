"""How the engine reads a Lucene query string: Lucene's classic parser, without precedence.

The expected structures are what OpenSearch 2.19 and Elasticsearch 7.17 print for these
strings (``_validate/query?explain``); tests/e2e/test_exact_matches.py checks the engines'
results themselves.
"""

from __future__ import annotations

import pytest

from beater.lucene import LuceneSyntaxError, describe, normalise, parse, tokenize


@pytest.mark.parametrize(
    "text, read",
    [
        # No precedence: AND makes the clauses on both sides required, and nothing else.
        ("a AND b OR c", "+a +b c"),
        ("a OR b AND c", "a +b +c"),
        ("level:error OR level:warn AND service:api", "level:error +level:warn +service:api"),
        ("a AND b OR c AND d", "+a +b +c +d"),
        ("a OR b NOT c", "a b -c"),
        ("a AND NOT b", "+a -b"),
        ("-a AND b", "-a +b"),  # AND does not make a prohibited clause required
        ("a && b || c", "+a +b c"),
        ("!a", "-a"),
        ("+a -b c", "+a -b c"),
        ("a OR (NOT b)", "a (-b)"),
        # Bare terms in a row are one text for the analyser (on a keyword field, one term).
        ("level:(error warn)", "level:error warn"),
        ("disk full", "disk full"),
        ("x -y a b", "x -y (a b)"),
        ("a b c:d", "(a b) c:d"),
        ("a b:c", "a b:c"),  # a term before a field is not part of a run
        ("a b OR c", "a b c"),  # nor a term before an operator
        ("a b*", "a b*"),  # nor a pattern
        # Fields apply to the terms of their group.
        ("f:(a OR g:b) c", "(f:a g:b) c"),
        ("*:x", "*:x"),
        ("ms\\*:disk", "ms*:disk"),
        # Terms keep their spelling, slop and boost.
        ('a^2 b~ c~1 "p q"~3^2', 'a^2 b~ c~1 "p q"~3^2'),
        ("b^3~2", "b~2^3"),
        ("x:[1 TO *} y:{a TO b]", "x:[1 TO *} y:{a TO b]"),
        ('x:["a b" TO c]', 'x:["a b" TO c]'),
        ("x:>=10", "x:>=10"),
        ("_exists_:trace", "_exists_:trace"),
        ("/re.x/ a\\:b", "/re.x/ a\\:b"),
        ("a + b", "a + b"),  # an operator followed by a space is a term
        ("foo and bar", "foo and bar"),  # lower case: terms
        ("(a b)^2", "(a b)^2"),
    ],
)
def test_strings_are_read_as_the_engine_reads_them(text, read):
    assert describe(parse(text)) == read


@pytest.mark.parametrize(
    "text, read",
    [
        ("a b OR c", "+a b c"),  # OR makes the clause before it optional
        ("x OR +a", "x a"),  # ... and a clause it introduces, even with `+`
        ("a AND b", "+a +b"),
        ("a -b", "+a -b"),
        ("level:(error warn)", "level:error warn"),
    ],
)
def test_default_operator_and(text, read):
    assert describe(parse(text, "AND")) == read


@pytest.mark.parametrize(
    "text, normal",
    [
        ("b AND a", "+a +b"),
        ("c AND (b AND a)", "+a +b +c"),  # a group of the same kind adds nothing
        ("(a OR b) OR c", "a b c"),
        ("a OR a", "a"),  # a clause twice is once
        ("((a))", "a"),
        ("(+a)", "a"),
        ("-(a)", "-a"),
        ("x AND (NOT y)", "+x +(-y)"),  # a negative group matches everything else: kept
        ("-(a OR b)", "-(a b)"),
        ("b OR a AND c", "+a +c b"),
        ("c a:x", "a:x c"),
    ],
)
def test_normal_form_sorts_and_drops_what_changes_no_match(text, normal):
    assert describe(normalise(parse(text))) == normal
    assert describe(normalise(parse(normal))) == normal


def test_with_minimum_should_match_optional_clauses_are_kept_as_they_are():
    assert describe(normalise(parse("a OR a"), should_counts=True)) == "a a"


@pytest.mark.parametrize(
    "text",
    ["a:b:c", "NOT NOT a", "+-a", "a^ 2", '"open', "a OR", "AND a", "a AND", ")", "(a", "msg*:disk", "]"],
)
def test_strings_the_engine_refuses_are_refused(text):
    with pytest.raises(LuceneSyntaxError):
        parse(text)


def test_tokens_follow_the_longest_match_then_the_first_definition():
    kinds = [
        (token.kind, token.image) for token in tokenize("AND ANDROID && &&& a* a*b ? /x\\/y/ ~2 [a TO b]")
    ]
    assert kinds == [
        ("AND", "AND"),
        ("TERM", "ANDROID"),
        ("AND", "&&"),
        ("TERM", "&&&"),
        ("PREFIXTERM", "a*"),
        ("WILDTERM", "a*b"),
        ("WILDTERM", "?"),
        ("REGEXPTERM", "/x\\/y/"),
        ("FUZZY_SLOP", "~2"),
        ("RANGEIN_START", "["),
        ("RANGE_GOOP", "a"),
        ("RANGE_TO", "TO"),
        ("RANGE_GOOP", "b"),
        ("RANGEIN_END", "]"),
        ("EOF", ""),
    ]
