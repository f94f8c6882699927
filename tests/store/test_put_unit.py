"""Store.put's reading of the engine's bulk answer, against a scripted node (estrom.testing):
every document the engine refused for what it holds is named, and an item it could not take now
makes the whole batch a retry. The same against a real engine: tests/beater/test_bulk.py."""

from __future__ import annotations

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.task import Clock

from beater.engine import Engine, EngineError, EngineUnavailable
from beater.store import Store
from estrom.testing import FakeEngine, engine_error

PARSING = engine_error(
    "mapper_parsing_exception",
    "failed to parse field [n] of type [integer]",
    {"type": "number_format_exception", "reason": 'For input string: "abc"'},
)


def stored(*items: tuple[int, dict | None]) -> dict:
    """A bulk answer: each item's status, and its error if refused."""
    return {
        "errors": any(status >= 300 for status, _ in items),
        "items": [
            {
                "index": {
                    "_index": "events",
                    "_id": str(n),
                    "status": status,
                    **({"error": error["error"]} if error else {"_seq_no": n, "_primary_term": 1}),
                }
            }
            for n, (status, error) in enumerate(items)
        ],
    }


def store(node: FakeEngine) -> Store:
    node.answer("PUT", "/events", {"acknowledged": True})
    return Store(Engine(FakeEngine.URL, http=StubTreq(node), clock=Clock()), clock=Clock())


async def put(node: FakeEngine, count: int):
    documents = [{"n": n} for n in range(count)]
    return await store(node).put("events", documents, [str(n) for n in range(count)], ["c"] * count)


@pytest_twisted.ensureDeferred
async def test_every_document_refused_for_what_it_holds_is_named():
    node = FakeEngine()
    node.answer("POST", "/_bulk", stored((201, None), (400, PARSING), (201, None), (400, PARSING)))
    with pytest.raises(EngineError) as refused:
        await put(node, 4)
    assert refused.value.refused == {
        1: 'failed to parse field [n] of type [integer]: For input string: "abc"',
        3: 'failed to parse field [n] of type [integer]: For input string: "abc"',
    }
    assert refused.value.type == "mapper_parsing_exception"
    assert [w.id for w in refused.value.written] == ["0", "2"]  # to be removed again
    (bulk,) = node.seen("POST", "/_bulk")
    assert [line["index"]["_id"] for line in bulk.body[::2]] == ["0", "1", "2", "3"]  # one request


@pytest_twisted.ensureDeferred
async def test_an_item_the_engine_could_not_take_now_makes_the_batch_a_retry():
    node = FakeEngine()
    busy = engine_error("es_rejected_execution_exception", "queue full")
    node.answer("POST", "/_bulk", stored((400, PARSING), (429, busy), (201, None)))
    with pytest.raises(EngineUnavailable, match="could not store documents now") as unavailable:
        await put(node, 3)
    assert unavailable.value.status == 429
    assert [w.id for w in unavailable.value.written] == ["2"]


@pytest_twisted.ensureDeferred
async def test_a_bulk_request_refused_whole_is_no_senders_fault():
    node = FakeEngine()
    node.answer("POST", "/_bulk", engine_error("cluster_block_exception", "index read-only"), status=403)
    with pytest.raises(EngineUnavailable, match="refuses to store in 'events'") as refused:
        await put(node, 2)
    assert refused.value.written == []
