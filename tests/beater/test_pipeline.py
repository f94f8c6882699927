"""Micro-batching and the bounded queue in front of the engine, on a real Beater.

Each Beater here gathers a batch until it holds ESTROM_BATCH_MAX_DOCS documents, and waits for
nothing else (no timer that could fire in these tests): which requests share a batch follows from
what was sent, not from how fast the machine is.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from estrom.clients import docs_url, eventually, first, grew, http, percolations, post, scrape
from tests.beater.test_ingest import tail


def batching_beater(stack, name: str, max_docs: int, **env: str) -> str:
    """A Beater whose batches leave only once they hold ``max_docs`` documents."""
    settings = {"ESTROM_BATCH_MAX_DOCS": str(max_docs), "ESTROM_BATCH_MAX_WAIT_MS": "600000", **env}
    return stack.start_beater(name, port=stack.ports.beater + 3, **settings)


async def queued(beater: str) -> float:
    return (await scrape(beater))[("estrom_queue_documents", ())]


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_share_one_percolation_and_get_their_own_counts(stack, index):
    try:  # stopped even if it never became ready
        beater = batching_beater(stack, "beater-batching", max_docs=5)
        stream = await tail(stack, index, "level:error")
        before, percolated = await scrape(beater), await percolations(stack.engine_url, index)
        url = docs_url(beater, index)
        requests = [  # 5 documents: the batch leaves with the last of them, whichever it is
            post(url, [{"level": "error", "n": 1}, {"level": "info"}]),
            post(url, {"level": "info"}),
            post(url, [{"level": "error", "n": 2}, {"level": "error", "n": 3}]),
        ]
        answers = [answer for _, answer in await gatherResults([Deferred.fromCoroutine(r) for r in requests])]
        assert answers == [
            {"accepted": 2, "matched": 1, "published": 1},
            {"accepted": 1, "matched": 0, "published": 0},
            {"accepted": 2, "matched": 2, "published": 2},
        ]
        after = await scrape(beater)
        assert grew(before, after, "estrom_batch_documents_count") == 1  # one batch...
        assert grew(before, after, "estrom_batch_documents_sum") == 5  # ...of all five
        assert await percolations(stack.engine_url, index) == percolated + 1  # one engine request
        for stage in ("parse", "pipeline", "answer"):  # where each request's time went
            assert grew(before, after, "estrom_stage_seconds_count", stage=stage) == 3, stage
        for stage in ("percolate", "publish"):  # and its batch's
            assert grew(before, after, "estrom_stage_seconds_count", stage=stage) == 1, stage
        hits = await stream.wait_for_hits(3)
        assert sorted(hit["_source"]["n"] for hit in hits) == [1, 2, 3]
        stream.close()
    finally:
        stack.stop("beater-batching")


@pytest_twisted.ensureDeferred
async def test_a_full_queue_answers_429_with_retry_after_and_loses_nothing(stack, index):
    # Room for 10 waiting documents, and a batch leaves with 9. Of four requests of 4 documents
    # sent at once, two wait (in whatever order they arrive), and two are refused at once.
    try:  # stopped even if it never became ready
        beater = batching_beater(stack, "beater-queue", max_docs=9, ESTROM_QUEUE_MAX_DOCS="10")
        stream = await tail(stack, index, "*")
        url = docs_url(beater, index)
        sent = [[{"request": r, "n": n} for n in range(4)] for r in range(4)]
        pending = [http.post(url, json=documents) for documents in sent]
        answered: list[int] = []
        for r, response in enumerate(pending):
            response.addCallback(lambda answer, r=r: answered.append(r) or answer)
        refused = await first(pending, 2)
        assert [response.code for _, response in refused] == [429, 429]
        for _, response in refused:
            assert response.headers.getRawHeaders("Retry-After") == ["1"]
            assert "retry later" in (await response.json())["error"]
        held = sorted(set(range(4)) - {r for r, _ in refused})
        assert await queued(beater) == 8  # refused only once both waited...
        assert sorted(answered) == sorted(r for r, _ in refused)  # ...and wait still
        assert (await post(url, {"release": 1}))[0] == 200  # the 9th document: the batch leaves
        assert [(await pending[r]).code for r in held] == [200, 200]
        hits = [hit for hit in await stream.wait_for_hits(9) if "request" in hit["_source"]]
        assert sorted((hit["_source"]["request"], hit["_source"]["n"]) for hit in hits) == [
            (r, n) for r in held for n in range(4)
        ]
        stream.close()
    finally:
        stack.stop("beater-queue")


@pytest_twisted.ensureDeferred
async def test_one_senders_bad_document_does_not_fail_the_others_in_its_batch(stack, index):
    created = await http.put(
        f"{stack.engine_url}/{index}",
        json={"mappings": {"properties": {"n": {"type": "integer"}, "ok": {"type": "keyword"}}}},
    )
    assert created.code == 200
    try:  # stopped even if it never became ready
        beater = batching_beater(stack, "beater-bad", max_docs=2)
        stream = await tail(stack, index, "ok:yes")
        url = docs_url(beater, index)
        before = await scrape(beater)
        good = Deferred.fromCoroutine(post(url, {"ok": "yes", "n": 1}))
        await eventually(lambda: queued(beater), what="the good document to wait for a second one")
        assert not good.called
        # The second document fills the batch: both go to the engine in one request, which
        # refuses it ("one" is no integer). Then each request is percolated on its own.
        bad = Deferred.fromCoroutine(post(url, {"ok": "yes", "n": "one"}))
        assert (await good) == (200, {"accepted": 1, "matched": 1, "published": 1})
        status, answer = await bad
        assert status == 422 and "refused the documents" in answer["error"]
        after = await scrape(beater)
        # The one percolation that went through was the good document's, alone.
        assert grew(before, after, "estrom_batch_documents_count") == 1
        assert grew(before, after, "estrom_batch_documents_sum") == 1
        assert grew(before, after, "estrom_http_responses_total", status="422") == 1
        assert after[("estrom_queue_documents", ())] == 0
        hits = await stream.wait_for_hits(1)
        assert [hit["_source"] for hit in hits] == [{"ok": "yes", "n": 1}]
        stream.close()
    finally:
        stack.stop("beater-bad")


@pytest_twisted.ensureDeferred
async def test_documents_no_listened_query_can_match_are_not_percolated_unless_that_is_turned_off(
    stack, index
):
    """The presearcher is on by default: a document that no listened-to query can match (here
    none has ``level: error``) is left out of the percolation. ESTROM_PRESEARCH=false percolates it."""
    stream = await tail(stack, index, "level:error")

    async def left_out(beater: str) -> bool:
        before = await scrape(beater)
        status, answer = await post(docs_url(beater, index), {"level": "info"})
        assert (status, answer) == (200, {"accepted": 1, "matched": 0, "published": 0})
        return grew(before, await scrape(beater), "estrom_documents_not_percolated_total") == 1

    try:
        # Once the query's anchor is read (a moment after the subscription): left out.
        await eventually(lambda: left_out(stack.beater_url), what="a document left out")
        off = stack.start_beater(
            "beater-presearch-off", port=stack.ports.beater + 3, ESTROM_PRESEARCH="false"
        )
        percolated = await percolations(stack.engine_url, index)
        for _ in range(3):
            assert not await left_out(off)
        assert await percolations(stack.engine_url, index) == percolated + 3
        status, answer = await post(docs_url(off, index), {"level": "error", "n": 1})
        assert (status, answer) == (200, {"accepted": 1, "matched": 1, "published": 1})
        assert [hit["_source"] for hit in await stream.wait_for_hits(1)] == [{"level": "error", "n": 1}]
    finally:
        stream.close()
        stack.stop("beater-presearch-off")
