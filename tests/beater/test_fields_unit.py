"""The fields a stored query names: mapped in its percolator index, written in as default fields."""

from __future__ import annotations

import pytest

from beater.fields import searched_fields, with_default_fields
from beater.identity import identify


@pytest.mark.parametrize(
    "query, fields",
    [
        ("level:error AND status:[500 TO 599]", {"level": "string", "status": "number"}),
        ("latency:>=250 OR _exists_:trace", {"latency": "number", "trace": "string"}),
        ("status:[500 TO *] OR status:unknown", {"status": "string"}),  # numbers only if always
        ("msg\\*:disk AND full", {}),  # wildcard field names and the default field are not mapped
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


def test_default_fields_are_written_into_each_query_that_searches_them():
    clause = identify(
        "events",
        {
            "bool": {
                "must": [{"query_string": {"query": "disk"}}, {"multi_match": {"query": "full"}}],
                "should": {"query_string": {"query": "x", "fields": ["msg"]}},
                "filter": {"term": {"level": "error"}},
            }
        },
    ).clause
    written = with_default_fields(clause, ["message", "host"])["bool"]
    assert written["must"] == [
        {"multi_match": {"query": "full", "fields": ["message", "host"]}},
        {"query_string": {"query": "disk", "fields": ["message", "host"]}},
    ]
    assert written["should"] == [{"query_string": {"query": "x", "fields": ["msg"]}}]  # named its own
    assert written["filter"] == [{"term": {"level": {"value": "error"}}}]
