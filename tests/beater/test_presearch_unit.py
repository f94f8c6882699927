"""The presearcher's anchors, query type by query type, and which documents meet them; no
engine (tests/beater/test_presearch.py checks them against the engine's own matches)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from beater.indexes import QUERY_FIELD
from beater.presearch import NOTHING, Anchors, Fields, Presearcher, anchor, read_mapping

MAPPING = {
    "properties": {
        "level": {"type": "keyword"},
        "msg": {"type": "text"},
        "service": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
        "host": {"properties": {"name": {"type": "keyword"}}},
        "lower": {"type": "keyword", "normalizer": "lowercase"},
        "english": {"type": "text", "analyzer": "english"},
        "status": {"type": "integer"},
    }
}
FIELDS = read_mapping(MAPPING, {})


def stored(query: object) -> object:
    """The clause the engine stores: a string is a query_string (beater.identity)."""
    return {"query_string": {"query": query}} if isinstance(query, str) else query


def met(query: object, document: dict, fields: Fields = FIELDS) -> bool:
    found = anchor(stored(query), fields)
    assert found is not None, f"no anchor for {query}"
    return Anchors([found]).met(document)


@pytest.mark.parametrize(
    ("query", "meets", "misses"),
    [
        # A keyword's term is its value, as it is.
        ({"term": {"level": "error"}}, {"level": ["info", "error"]}, {"level": "Error"}),
        ({"term": {"level": {"value": "error"}}}, {"level": "error"}, {"level": "errors"}),
        ({"terms": {"level": ["error", "warn"]}}, {"level": "warn"}, {"level": "info"}),
        ("level:error", {"level": "error"}, {"msg": "error"}),
        ('level:"disk full"', {"level": "disk full"}, {"level": "disk"}),
        # A multi-field reads its parent's value; objects and dotted names alike.
        ("service.keyword:api", {"service": "api"}, {"service": "api2"}),
        ("host.name:h1", {"host": [{"name": "h0"}, {"name": "h1"}]}, {"host": {"name": "h2"}}),
        ("host.name:h1", {"host.name": "h1"}, {"hostname": "h1"}),
        # Text: a word of the query, lower-cased, in the value lower-cased one letter at a time.
        ("msg:ERROR", {"msg": "Disk ERROR: full"}, {"msg": "disk full"}),
        ("msg:kit", {"msg": "\u212aİT"}, {"msg": "kits"}),  # Java lower-cases both to ASCII
        ("msg:error", {"msg": "error.log"}, {"msg": "errors"}),
        ("msg:error", {"msg": "x" * 300 + "error"}, {"msg": "x" * 30 + "error"}),  # a run split
        ({"match": {"msg": "disk timeout"}}, {"msg": "a timeout"}, {"msg": "a reset"}),
        ({"match_phrase": {"msg": "disk full"}}, {"msg": "disk is full"}, {"msg": "it is"}),
        ('msg:"connection reset"', {"msg": "Connection was reset"}, {"msg": "peer gone"}),
        ({"term": {"msg": "error"}}, {"msg": "ERROR"}, {"msg": "fine"}),
        # Required clauses: each is necessary; the anchor is one of them.
        ("level:error AND msg:disk", {"level": "error", "msg": "x"}, {"level": "info", "msg": "disk"}),
        (
            {"bool": {"filter": [{"term": {"level": "error"}}], "must_not": [{"term": {"msg": "x"}}]}},
            {"level": "error"},
            {"level": "info"},
        ),
        # Only alternatives: one of them is needed.
        ("level:error OR level:warn", {"level": "warn"}, {"level": "info"}),
        ("level:error OR (msg:disk AND level:x*)", {"msg": "disk"}, {"level": "x1"}),
        (
            {"bool": {"should": [{"term": {"level": "a"}}, {"term": {"host.name": "b"}}]}},
            {"host": {"name": "b"}},
            {"level": "b"},
        ),
        ({"constant_score": {"filter": {"term": {"level": "error"}}}}, {"level": "error"}, {"level": "x"}),
        ({"exists": {"field": "level"}}, {"level": ""}, {"level": None, "msg": "x"}),
    ],
)
def test_a_documents_that_meets_the_anchor_and_one_that_cannot_match(query, meets, misses):
    assert met(query, meets)
    assert not met(query, misses)


def test_whole_numbers_and_booleans_are_taken_as_the_engines_text_of_them_fractions_may_match_anything():
    # The engine indexes 200 in a keyword field as "200", true as "true", in a text field the same
    # text analysed (tests/e2e/test_exact_matches.py: numbers in text fields of an unmapped index).
    assert met("level:200", {"level": 200})
    assert not met("level:200", {"level": 201})
    assert met("msg:true", {"msg": [True]})
    assert not met("msg:true", {"msg": [False]})
    assert met("msg:500", {"msg": -500})
    assert met("level:200", {"level": 1.5})  # a fraction's text is not reproduced
    assert not met("level:200", {"level": None})


@pytest.mark.parametrize(
    "query",
    [
        "error",  # default fields
        "level:err*",
        "level:error~1",
        "level:error^2",
        "level:[a TO b]",
        "lower:error",  # a normalizer
        "english:errors",  # another analyzer
        "msg:日本",  # other letters
        "status:200",
        "level:error OR msg:*",
        "-level:error",
        {"range": {"status": {"gte": 200}}},
        {"term": {"level": {"value": "error", "case_insensitive": True}}},
        {"match": {"msg": {"query": "disk", "fuzziness": 1}}},
        {"bool": {"should": [{"term": {"level": "a"}}, {"term": {"level": "b"}}], "minimum_should_match": 2}},
        {"script": {"script": "true"}},
        {"nested": {"path": "host", "query": {"term": {"host.name": "a"}}}},
        {"query_string": {"query": "level:error", "analyzer": "whitespace"}},
    ],
)
def test_what_cannot_be_decided_here_makes_every_document_a_candidate(query):
    assert anchor(stored(query), FIELDS) is None


def test_a_required_clause_that_cannot_be_decided_leaves_the_others():
    assert anchor(stored("level:err* AND msg:disk"), FIELDS) == frozenset({("has", "msg", "disk")})


def test_a_field_copied_into_or_shadowed_has_no_anchor_and_the_others_keep_theirs():
    copying = {"properties": {"a": {"type": "keyword", "copy_to": "b"}, "b": {"type": "keyword"}}}
    assert anchor(stored("b:x"), read_mapping(copying, {})) is None
    assert anchor(stored("a:x"), read_mapping(copying, {})) == frozenset({("eq", "a", "x")})
    into_multi = {
        "properties": {"a": {"type": "keyword", "copy_to": ["b"]}, "b": MAPPING["properties"]["service"]}
    }
    assert anchor(stored("b.keyword:x"), read_mapping(into_multi, {})) is None
    without_source = {
        "dynamic_templates": [{"all": {"match_mapping_type": "*", "mapping": {"copy_to": "estrom_all"}}}],
        "properties": {"estrom_all": {"type": "text"}, **MAPPING["properties"]},
    }
    assert anchor(stored("estrom_all:disk"), read_mapping(without_source, {})) is None
    assert anchor(stored("level:error"), read_mapping(without_source, {})) == frozenset(
        {("eq", "level", "error")}
    )
    named = {"dynamic_templates": [{"t": {"match": "*", "mapping": {"copy_to": "{name}_all"}}}], **MAPPING}
    assert anchor(stored("level:error"), read_mapping(named, {})) is None
    shadowed = read_mapping({**MAPPING, "runtime": {"level": {"type": "keyword"}}}, {})
    assert anchor(stored("level:x"), shadowed) is None
    assert anchor(stored("msg:disk"), shadowed) == frozenset({("has", "msg", "disk")})


def test_an_index_with_its_own_default_analyzer_has_no_text_anchors():
    analysed = read_mapping(MAPPING, {"index": {"analysis": {"analyzer": {"default": {"type": "simple"}}}}})
    assert anchor(stored("msg:error"), analysed) is None
    assert anchor(stored("level:error"), analysed) == frozenset({("eq", "level", "error")})


def test_a_query_the_index_does_not_have_is_met_by_no_document():
    assert not Anchors([NOTHING]).met({"level": "error"})
    assert Anchors([NOTHING, anchor(stored("level:error"), FIELDS)]).met({"level": "error"})


class _Engine:
    """Percolator indexes and their queries' stored clauses: what a Presearcher reads."""

    def __init__(self, stored: dict[str, dict[str, object]]):
        self.stored = stored
        self.asked: list[tuple[str, list[str]]] = []  # (percolator index, IDs) of each read

    async def request(self, method: str, path: str, body: dict | None = None, params: dict | None = None):
        name, what = path.strip("/").split("/", 1)
        if what == "_mapping":
            return {name: {"mappings": MAPPING}}
        if what == "_settings":
            return {name: {"settings": {}}}
        assert what == "_mget", path
        self.asked.append((name, list(body["ids"])))
        queries = self.stored[name]
        return {
            "docs": [
                {"_id": i, "found": True, "_source": {QUERY_FIELD: queries[i]}}
                if i in queries
                else {"_id": i}
                for i in body["ids"]
            ]
        }


def test_queries_of_other_indexes_and_absent_ones_leave_an_indexs_documents_out():
    """Listened-to queries are of several indexes: in each, the others' match nothing (and are
    not asked for there once found elsewhere); one found nowhere is asked for again, and once
    stored its documents are candidates."""
    engine = _Engine({"q-a": {"a1": stored("level:error")}, "q-b": {"b1": stored("level:warn")}})
    clock = Clock()
    presearch = Presearcher(engine, lambda index: f"q-{index}", clock=clock, absent_seconds=1.0)
    only = ["a1", "b1", "c1"]
    documents = [{"level": "error"}, {"level": "warn"}, {"level": "info"}]

    def settled(index: str) -> list[int] | None:
        for _ in range(3):  # the mapping, then the anchors (each read once, in the background)
            chosen = presearch.candidates(index, documents, only)
        return chosen

    assert settled("b") == [1]
    assert settled("a") == [0]
    assert engine.asked == [("q-b", ["a1", "b1", "c1"]), ("q-a", ["a1", "c1"])]  # b1: of index b
    assert presearch.anchored("a", only) == ["a1", "b1"]  # c1 may be registered meanwhile
    engine.stored["q-a"]["c1"] = stored("level:info")
    clock.advance(1.5)
    assert settled("a") == [0, 2]
    assert engine.asked[2:] == [("q-a", ["c1"])]
    assert presearch.anchored("a", only) == only
