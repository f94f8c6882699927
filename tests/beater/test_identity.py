"""Query identity: same meaning, same ID; different meaning, different ID."""

from __future__ import annotations

import re

import pytest

from beater.identity import InvalidQuery, canonical_lucene, identify, searched_fields


def ids(*queries, index="events"):
    return [identify(index, query).id for query in queries]


def test_id_is_16_lowercase_hex_digits_and_stable():
    # Pinned: IDs must stay the same across restarts and versions (clients keep them).
    assert identify("events", "foo AND bar").id == "10c5b132c4835e64"
    assert re.fullmatch(r"[0-9a-f]{16}", identify("events", {"match_all": {}}).id)


def test_same_query_different_order_shares_id():
    a, b, c = ids("foo AND bar", "bar AND foo", "( bar  AND foo )")
    assert a == b == c


@pytest.mark.parametrize(
    "other",
    ["foo OR bar", "foo AND baz", "foo", "foo AND NOT bar", "FOO AND bar", "foo and bar"],
)
def test_different_meaning_gets_a_different_id(other):
    assert ids("foo AND bar") != ids(other)


def test_same_query_on_another_index_gets_another_id():
    assert ids("foo", index="events") != ids("foo", index="logs")


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("  foo   AND  bar ", "bar AND foo"),
        ("c AND (b AND a)", "a AND b AND c"),  # AND is associative
        ("a OR a", "a"),  # and idempotent
        ("a AND b OR c", "(a AND b) OR c"),  # explicit grouping: AND binds tighter
        ("c OR (b AND a)", "(a AND b) OR c"),
        ("level:(warn OR error)", "level:(error OR warn)"),
        ("level:(error)", "level:error"),
        ("((foo))", "foo"),
        ("b a", "a b"),  # clauses joined by the default operator
        ("-b +a", "+a -b"),
        ("NOT (b OR a)", "NOT (a OR b)"),
        ("x:[1   TO 5}", "x:[1 TO 5}"),
        ('msg:"disk  full"~2', 'msg:"disk  full"~2'),  # inside a phrase, spaces are meaning
        ("b && a", "b && a"),  # luqum reads && as a word: order kept, nothing merged wrongly
        ("foo and bar", "and bar foo"),  # lowercase `and` is a term to Lucene, not an operator
    ],
)
def test_canonical_lucene_form(text, canonical):
    assert canonical_lucene(text) == canonical
    assert canonical_lucene(canonical) == canonical  # a fixed point


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
        ("   ", "the query is empty"),
        (42, "a Lucene query string or a query DSL object"),
    ],
)
def test_refused_queries_say_why(query, reason):
    with pytest.raises(InvalidQuery, match=re.escape(reason)):
        identify("events", query)


@pytest.mark.parametrize(
    "query, fields",
    [
        ("level:error AND status:[500 TO 599]", {"level": "string", "status": "number"}),
        ("latency:>=250 OR _exists_:trace", {"latency": "number", "trace": "string"}),
        ("status:[500 TO *] OR status:unknown", {"status": "string"}),  # numbers only if always
        ("msg*:disk AND full", {}),  # wildcard field names and the default field are not mapped
        (
            {
                "bool": {
                    "filter": [{"range": {"n": {"gte": 5}}}, {"term": {"host.name": "a"}}],
                    "must_not": {"match": {"level": "debug"}},
                    "should": [{"exists": {"field": "trace"}}, {"query_string": {"query": "code:[1 TO 2]"}}],
                }
            },
            {"n": "number", "host.name": "string", "level": "string", "trace": "string", "code": "number"},
        ),
        ({"range": {"@timestamp": {"gte": "now-1h"}}}, {"@timestamp": "string"}),
    ],
)
def test_fields_a_query_names_are_found_with_their_kind(query, fields):
    assert searched_fields(identify("events", query).clause) == fields
