"""The Percolator's error paths against a scripted node (estrom.testing), without Java: what
the engine refuses of a query, a full index, a shard still starting, a stored query that fails
every percolation. The same paths against real engines: test_stored_queries, test_engine_errors."""

from __future__ import annotations

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from beater.engine import Engine
from beater.identity import identify
from beater.indexes import ID_FIELD, TAKEN_OUT_FIELD
from beater.percolator import Percolator, TooManyQueries
from beater.validation import InvalidQuery
from estrom.testing import FakeEngine, engine_error

INDEX = "events"
QUERIES = "/estrom-queries-events"


def node_with_an_index(count: int = 0) -> FakeEngine:
    """A node where the percolator index of INDEX exists (made without a source index) with
    ``count`` queries, none of them the one a test stores."""
    node = FakeEngine()
    node.answer("GET", f"{QUERIES}/_mapping", {QUERIES[1:]: {"mappings": {"properties": {}}}})
    node.answer("GET", f"/_cluster/health{QUERIES}", {"status": "green"})
    node.answer("GET", f"{QUERIES}/_doc/*", {"found": False}, status=404)
    node.answer("GET", f"{QUERIES}/_count", {"count": count})
    node.answer("PUT", f"{QUERIES}/_mapping", {"acknowledged": True})
    node.answer("PUT", f"{QUERIES}/_doc/*", {"result": "created"})
    return node


def percolator(node: FakeEngine, clock: Clock | None = None, **options) -> Percolator:
    clock = clock or Clock()
    return Percolator(Engine(FakeEngine.URL, http=StubTreq(node), clock=clock), clock=clock, **options)


@pytest_twisted.ensureDeferred
async def test_a_query_the_engine_refuses_is_invalid_with_the_engines_reason():
    node = node_with_an_index()
    node.answer(
        "PUT", f"{QUERIES}/_doc/*", engine_error("parsing_exception", "unknown field [x]"), status=400
    )
    with pytest.raises(InvalidQuery, match="unknown field"):
        await percolator(node).store(identify(INDEX, "level:error"))


@pytest_twisted.ensureDeferred
async def test_a_query_the_engine_fails_on_is_invalid_not_a_retry():
    node = node_with_an_index()
    node.answer("PUT", f"{QUERIES}/_doc/*", engine_error("null_pointer_exception", "boom"), status=500)
    with pytest.raises(InvalidQuery, match="cannot run this query"):
        await percolator(node).store(identify(INDEX, "level:error"))


@pytest_twisted.ensureDeferred
async def test_a_full_index_takes_no_more_queries_and_nothing_is_written():
    node = node_with_an_index(count=5)
    with pytest.raises(TooManyQueries, match="5 stored queries"):
        await percolator(node, max_queries=5).store(identify(INDEX, "level:error"))
    assert node.seen("PUT", f"{QUERIES}/_doc/*") == []


def test_a_shard_still_starting_is_asked_again_until_it_answers():
    node, clock = node_with_an_index(), Clock()
    recovering = engine_error("no_shard_available_action_exception", "shard state RECOVERING")
    node.answer("GET", f"{QUERIES}/_doc/*", recovering, status=503)
    stored = Deferred.fromCoroutine(percolator(node, clock).store(identify(INDEX, "level:error")))
    clock.advance(0.1)
    clock.advance(0.1)
    assert not stored.called  # asked three times, every 0.1 s
    node.answer("GET", f"{QUERIES}/_doc/*", {"found": False}, status=404)
    clock.advance(0.1)
    assert stored.called and stored.result is None
    assert len(node.seen("GET", f"{QUERIES}/_doc/*")) == 4
    assert len(node.seen("PUT", f"{QUERIES}/_doc/*")) == 1


def _percolations(bad: str):
    """A percolator index's _search: the stored query ``bad`` fails any percolation that runs it."""
    ids = ["a", "b", bad, "d"]

    def search(body: dict) -> tuple[int, dict]:
        query = body["query"]
        if "must_not" in query.get("bool", {}):  # the IDs of the queries still percolated
            return 200, {"hits": {"hits": [{"_id": i, "sort": [i]} for i in ids]}}
        chosen = (query.get("bool", {}).get("filter") or [{}, {}])[1]
        if chosen.get("term", {}).get(ID_FIELD) == "":
            return 200, {"hits": {"hits": []}}  # the documents alone are readable
        span = chosen.get("range", {}).get(ID_FIELD)
        if span is not None and not span["gte"] <= bad <= span["lte"]:
            return 200, {"hits": {"hits": []}}
        if span is None and taken_out:
            hit = {"_id": "a", "fields": {"_percolator_document_slot": [0]}, "sort": ["a"]}
            return 200, {"hits": {"hits": [hit]}}
        return 400, engine_error(
            "search_phase_execution_exception", "failed", {"type": "x", "reason": "bad script"}
        )

    taken_out: list[str] = []
    return search, taken_out


@pytest_twisted.ensureDeferred
async def test_a_stored_query_that_fails_every_percolation_is_found_and_taken_out():
    node = FakeEngine()
    search, taken_out = _percolations("c")
    node.answer("POST", f"{QUERIES}/_search", search)
    node.answer("PUT", f"{QUERIES}/_mapping", {"acknowledged": True})
    node.answer(
        "GET",
        f"{QUERIES}/_doc/c",
        {"found": True, "_source": {ID_FIELD: "c"}, "_seq_no": 1, "_primary_term": 1},
    )

    def taken(body: dict) -> tuple[int, dict]:
        taken_out.append(body[TAKEN_OUT_FIELD])
        return 200, {"result": "updated"}

    node.answer("PUT", f"{QUERIES}/_doc/c", taken)
    told: list[tuple[str, str]] = []
    percolating = percolator(node)
    percolating.taken_out = lambda query_id, why: told.append((query_id, why))
    matches = await percolating.percolate(INDEX, [{"msg": "x"}])
    assert matches == {"a": [0]}  # percolated again without it
    assert taken_out == ["bad script"]
    assert told and told[0][0] == "c" and "bad script" in told[0][1]
