"""Micro-batching and the bounded queue in front of the engine, on a real Beater."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList

from tests.beater.test_ingest import percolations, tail
from tests.clients import http, post


def slow_batching_beater(stack, name: str, **env: str) -> str:
    """A Beater whose batches wait 500 ms for more documents, unless told otherwise."""
    settings = {"ESTROM_BATCH_MAX_WAIT_MS": "500", **env}
    return stack.start_beater(name, port=stack.ports.beater + 3, **settings)


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_share_one_percolation_and_get_their_own_counts(stack, index):
    beater = slow_batching_beater(stack, "beater-batching")
    try:
        stream = await tail(stack, index, "level:error")
        before = await percolations(stack, index)
        url = f"{beater}/api/v0.1/docs/{index}"
        requests = [
            post(url, [{"level": "error", "n": 1}, {"level": "info"}]),
            post(url, {"level": "info"}),
            post(url, [{"level": "error", "n": 2}, {"level": "error", "n": 3}]),
        ]
        answers = [
            answer
            for _, (_, answer) in await DeferredList(
                [Deferred.fromCoroutine(request) for request in requests]
            )
        ]
        assert answers == [
            {"accepted": 2, "matched": 1, "published": 1},
            {"accepted": 1, "matched": 0, "published": 0},
            {"accepted": 2, "matched": 2, "published": 2},
        ]
        assert await percolations(stack, index) == before + 1
        hits = await stream.wait_for_hits(3)
        assert sorted(hit["_source"]["n"] for hit in hits) == [1, 2, 3]
        stream.close()
    finally:
        stack.stop("beater-batching")


@pytest_twisted.ensureDeferred
async def test_a_full_queue_answers_429_with_retry_after_and_loses_nothing(stack, index):
    # Room for 10 waiting documents; batches wait 1.5 s. Of four requests of 4 documents sent
    # at once, two fit (in whatever order they arrive) and two are refused.
    beater = slow_batching_beater(
        stack, "beater-queue", ESTROM_QUEUE_MAX_DOCS="10", ESTROM_BATCH_MAX_WAIT_MS="1500"
    )
    try:
        stream = await tail(stack, index, "*")
        url = f"{beater}/api/v0.1/docs/{index}"
        sent = [[{"request": r, "n": n} for n in range(4)] for r in range(4)]
        responses = [
            response
            for _, response in await DeferredList([http.post(url, json=documents) for documents in sent])
        ]
        assert sorted(response.code for response in responses) == [200, 200, 429, 429]
        for response in responses:
            if response.code == 429:
                assert response.headers.getRawHeaders("Retry-After") == ["1"]
                assert "retry later" in (await response.json())["error"]
        accepted = [r for r, response in enumerate(responses) if response.code == 200]
        hits = await stream.wait_for_hits(8)
        assert sorted((hit["_source"]["request"], hit["_source"]["n"]) for hit in hits) == [
            (r, n) for r in accepted for n in range(4)
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
    beater = slow_batching_beater(stack, "beater-bad")
    try:
        stream = await tail(stack, index, "ok:yes")
        url = f"{beater}/api/v0.1/docs/{index}"
        good, bad = (
            Deferred.fromCoroutine(post(url, {"ok": "yes", "n": 1})),
            Deferred.fromCoroutine(post(url, {"ok": "yes", "n": "one"})),
        )
        assert (await good) == (200, {"accepted": 1, "matched": 1, "published": 1})
        status, answer = await bad
        assert status == 422 and "refused the documents" in answer["error"]
        hits = await stream.wait_for_hits(1)
        assert [hit["_source"] for hit in hits] == [{"ok": "yes", "n": 1}]
        stream.close()
    finally:
        stack.stop("beater-bad")
