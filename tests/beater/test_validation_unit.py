"""The query validator: every key of every object is known, every value typed, sizes bounded."""

from __future__ import annotations

import re

import pytest

from beater.identity import identify
from beater.validation import DEFAULT_LIMITS, InvalidQuery, Limits


def refused(query, limits: Limits = DEFAULT_LIMITS) -> str:
    with pytest.raises(InvalidQuery) as raised:
        identify("events", query, limits)
    return str(raised.value)


@pytest.mark.parametrize(
    "query, reason",
    [
        # Another spelling the engine reads: refused by name, whatever hides inside.
        (
            {"bool": {"mustNot": {"wrapper": {"query": "e30="}}}},
            "query.bool: unknown key 'mustNot' (write 'must_not')",
        ),
        ({"bool": {"must": [{"match_all": {}}, {"script": {}}]}}, "query.bool.must[1]: query type 'script'"),
        # terms lookups under any field name, `boost` and `_...` included.
        (
            {"terms": {"boost": {"index": "users", "id": "1", "path": "n"}}},
            "query.terms.boost: a terms lookup",
        ),
        ({"terms": {"_x": {"index": "users", "id": "1", "path": "n"}}}, "query.terms._x: a terms lookup"),
        ({"terms": {"user": ["a"], "host": ["b"]}}, "names exactly one field, not 2"),
        (
            {"nested": {"path": "a", "query": {"match_all": {}}, "inner_hits": {"script_fields": {}}}},
            "query.nested: unknown key 'inner_hits'",
        ),
        (
            {"regexp": {"msg": {"value": "(a|aa)*b", "max_determinized_states": 10_000_000}}},
            "query.regexp.msg.max_determinized_states: must be between 1 and 10000",
        ),
        (
            {"query_string": {"query": "msg:/a.*b/", "max_determinized_states": 1_000_000}},
            "query.query_string.max_determinized_states",
        ),
        ({"regexp": {"msg": "a" * 1001}}, "query.regexp.msg: the pattern is longer than 1000"),
        ("msg:/" + "a" * 1001 + "/", "the pattern is longer than 1000"),
        ({"range": {"f": 5}}, "query.range.f: must be an object, not a number"),
        ({"range": {"f": {"gte": {"script": 1}}}}, "query.range.f.gte: must be a string, number or null"),
        ({"term": {"f": {"value": "x", "script": "y"}}}, "query.term.f: unknown key 'script'"),
        ({"match": {"f": ["a"]}}, "query.match.f: must be a string, number or boolean, not an array"),
        ({"match": {"f": {"operator": "and"}}}, "query.match.f: give exactly one of 'query'"),
        ({"bool": {"filter": "x"}}, "query.bool.filter: a query clause is an object"),
        ({"boosting": {"positive": {"match_all": {}}}}, "query.boosting: 'negative' is missing"),
        (
            {"geo_shape": {"loc": {"indexed_shape": {"index": "shapes", "id": "1"}}}},
            "'geo_shape' is not allowed",
        ),
        ({"match_all": {"boost": "high"}}, "query.match_all.boost: must be a number, not a string"),
        ({"ids": {"values": [1]}}, "query.ids.values[0]: must be a string"),
    ],
)
def test_hostile_or_malformed_queries_are_refused_naming_the_path(query, reason):
    assert reason in refused(query)


def test_deep_json_is_refused_without_recursing():
    deep: dict = {"match_all": {}}
    for _ in range(100_000):  # far deeper than the interpreter's recursion limit
        deep = {"bool": {"must": deep}}
    assert "nested deeper than 32 levels" in refused(deep)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("(" * 2000 + "a" + ")" * 2000, "groups nested deeper than 32 levels"),
        ("a " * 200_000, "longer than 16384 bytes"),
        ("a " * 1100, "more than 1024 terms"),
    ],
)
def test_lucene_strings_are_bounded_before_they_are_parsed(text, reason):
    assert reason in refused(text)


def test_limits_are_configurable():
    assert "more than 3 terms" in refused("a b c d", Limits(max_clauses=3))
    assert "longer than 10 bytes" in refused("a" * 11, Limits(max_bytes=10))
    assert "larger than 20 bytes" in refused({"term": {"message": "x" * 20}}, Limits(max_bytes=20))
    assert "more than 2 clauses" in refused({"terms": {"f": ["a", "b", "c"]}}, Limits(max_clauses=2))


@pytest.mark.parametrize(
    "query",
    [
        {"bool": {"must_not": {"term": {"level": "debug"}}, "minimum_should_match": "50%", "boost": 2}},
        {"match": {"msg": {"query": "disk full", "operator": "and", "fuzziness": "AUTO"}}},
        {"match": {"boost": "a field named boost"}},
        {"terms": {"level": ["error", "warn"], "boost": 1.5, "_name": "levels"}},
        {"terms": {"boost": ["a field named boost"]}},
        {"range": {"@timestamp": {"gte": "now-1h", "lt": None, "format": "strict_date_optional_time"}}},
        {"regexp": {"msg": {"value": "dis[ck]", "flags": "ALL", "max_determinized_states": 500}}},
        {"query_string": {"query": "level:error AND msg:/fail.*/", "default_operator": "AND"}},
        {"simple_query_string": {"query": "disk +full", "fields": ["msg"], "flags": "AND|OR"}},
        {"nested": {"path": "user", "query": {"term": {"user.name": "x"}}, "score_mode": "avg"}},
        {"dis_max": {"queries": [{"term": {"a": 1}}, {"term": {"b": 2}}], "tie_breaker": 0.3}},
        {"boosting": {"positive": {"match_all": {}}, "negative": {"term": {"a": 1}}, "negative_boost": 0.5}},
        {"constant_score": {"filter": {"exists": {"field": "trace"}}}},
        {"multi_match": {"query": "disk", "fields": ["msg^2", "title"], "type": "best_fields"}},
        {"wildcard": {"host": {"wildcard": "web-*"}}},
        {"fuzzy": {"user": {"value": "ki", "fuzziness": 2}}},
        {"ids": {"values": ["1", "2"]}},
        {"geo_distance": {"distance": "10km", "loc": {"lat": 52.5, "lon": 13.4}}},
        {"geo_bounding_box": {"loc": {"top_left": [13.0, 53.0], "bottom_right": "52.0,14.0"}}},
        {"geo_polygon": {"loc": {"points": [[13, 52], [14, 52], [14, 53]]}}},
    ],
)
def test_queries_people_write_are_accepted(query):
    assert re.fullmatch(r"[0-9a-f]{16}", identify("events", query).id)
