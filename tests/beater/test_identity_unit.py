"""Query identity: same meaning, same ID; different meaning, different ID."""

from __future__ import annotations

import re

import pytest

from beater.identity import InvalidQuery, identify


def ids(*queries, index="events"):
    return [identify(index, query).id for query in queries]


def test_id_is_16_lowercase_hex_digits_and_stable():
    # Pinned: IDs must stay the same across restarts and versions (clients keep them). A change
    # of the identity rules changes these on purpose, and says so in its commit.
    assert identify("events", "foo AND bar").id == "bd292fe50667eb63"
    assert identify("events", "a AND b OR c").id == "c02628579519fdd3"
    assert identify("events", {"match_all": {}}).id == "8438b915edf90eee"  # DSL IDs are as before
    assert re.fullmatch(r"[0-9a-f]{16}", identify("events", {"match_all": {}}).id)


@pytest.mark.parametrize(
    "same",
    [
        ["foo AND bar", "bar AND foo", "( bar  AND foo )", "bar && foo", "+foo +bar", "foo AND (bar)"],
        ["a AND b OR c", "c OR a AND b", "+a +b c", "+b c +a"],
        ["a OR b AND c", "a +b +c", "+c a +b"],
        ["level:(warn OR error)", "level:error OR level:warn", "(level:warn) OR level:error"],
        ["a OR a", "a", "((a))"],
        ["NOT (b OR a)", "-(a OR b)", "!(b OR a)"],
    ],
)
def test_strings_the_engine_reads_alike_share_an_id(same):
    assert len(set(ids(*same))) == 1


@pytest.mark.parametrize(
    "one, other",
    [
        ("a AND b OR c", "(a AND b) OR c"),  # +a +b c: c does not decide; here it does
        ("a OR b AND c", "a OR (b AND c)"),
        ("level:(error warn)", "level:(warn error)"),  # one term "error warn" on a keyword field
        ("disk full", "disk OR full"),
        ("foo AND bar", "foo AND baz"),
        ("foo AND bar", "foo AND NOT bar"),
        ("foo AND bar", "FOO AND bar"),
        ("foo AND bar", "foo and bar"),  # lower-case `and` is a term
        ("a\\-b", '"a-b"'),  # spelling is kept: no guessing what an analyser makes of it
        ("x:[1 TO 5]", "x:[1 TO 5}"),
    ],
)
def test_strings_the_engine_reads_differently_get_different_ids(one, other):
    assert len(set(ids(one, other))) == 2


def test_same_query_on_another_index_gets_another_id():
    assert ids("foo", index="events") != ids("foo", index="logs")


def test_a_query_string_is_stored_and_shown_as_written():
    identified = identify("events", "  b OR a AND c ")
    assert identified.query == "  b OR a AND c "
    assert identified.clause == {"query_string": {"query": "  b OR a AND c "}}


def test_query_string_options_take_part_in_the_reading():
    default_or = {"query_string": {"query": "a b OR c"}}
    default_and = {"query_string": {"query": "a b OR c", "default_operator": "AND"}}
    assert len(set(ids(default_or, default_and))) == 2
    with_and = [
        {"query_string": {"query": text, "default_operator": "AND"}} for text in ("a b OR c", "+a c OR b")
    ]
    assert len(set(ids(*with_and))) == 1
    counted = {"query_string": {"query": "a OR a", "minimum_should_match": 2}}
    once = {"query_string": {"query": "a", "minimum_should_match": 2}}
    assert len(set(ids(counted, once))) == 2  # optional clauses count: the repeat is kept


def test_lucene_string_and_equivalent_query_string_dsl_share_id():
    assert len(set(ids("foo AND bar", {"query_string": {"query": "bar AND foo"}}))) == 1


def test_dsl_key_order_clause_order_and_short_forms_share_id():
    one = {
        "query": {
            "bool": {
                "must": {"match": {"msg": "disk"}},
                "filter": [{"term": {"level": "error"}}, {"term": {"service": "api"}}],
            }
        }
    }
    two = {
        "bool": {
            "filter": [{"term": {"service": {"value": "api"}}}, {"term": {"level": {"value": "error"}}}],
            "must": [{"match": {"msg": {"query": "disk"}}}],
        }
    }
    assert len(set(ids(one, two))) == 1


def test_dsl_should_keeps_duplicates_because_minimum_should_match_counts_them():
    once = {"bool": {"should": [{"term": {"a": "x"}}], "minimum_should_match": 2}}
    twice = {"bool": {"should": [{"term": {"a": "x"}}, {"term": {"a": "x"}}], "minimum_should_match": 2}}
    assert len(set(ids(once, twice))) == 2


def test_terms_values_order_does_not_matter():
    assert (
        len(set(ids({"terms": {"level": ["warn", "error"]}}, {"terms": {"level": ["error", "warn"]}}))) == 1
    )


@pytest.mark.parametrize(
    "query, reason",
    [
        ({"script": {"script": "true"}}, "query type 'script' is not allowed"),
        ({"function_score": {"query": {"match_all": {}}}}, "query type 'function_score' is not allowed"),
        ({"percolate": {"field": "q", "document": {}}}, "query type 'percolate' is not allowed"),
        ({"more_like_this": {"like": [{"_id": "1"}]}}, "query type 'more_like_this' is not allowed"),
        ({"wrapper": {"query": "e30="}}, "query type 'wrapper' is not allowed"),
        ({"has_child": {"type": "x", "query": {}}}, "query type 'has_child' is not allowed"),
        ({"terms": {"user": {"index": "users", "id": "1", "path": "f"}}}, "a terms lookup is not allowed"),
        ({"bool": {"must": [{"match_all": {}}, {"script": {}}]}}, "query type 'script' is not allowed"),
        ({"constant_score": {"filter": {"script_score": {}}}}, "query type 'script_score' is not allowed"),
        ({"match": {"a": "x"}, "term": {"b": "y"}}, "exactly one key"),
        ({"query": {"match_all": {}}, "size": 10}, "only have the key 'query'"),
        ("foo AND (", "cannot parse the query string"),
        ("level:error OR *:timeout", "the field '*:' is not allowed"),
        ("a/" * 8000, "more than 2048 tokens"),  # terms need no spaces: the cap counts tokens
        ({"query_string": {"query": "timeout", "default_field": "*"}}, '"default_field": "*" is not allowed'),
        ("   ", "the query is empty"),
        (42, "a Lucene query string or a query DSL object"),
    ],
)
def test_refused_queries_say_why(query, reason):
    with pytest.raises(InvalidQuery, match=re.escape(reason)):
        identify("events", query)
