"""Beater's memory is bounded per process, not per request: the bytes of requests it holds at
once (ESTROM_MAX_BYTES_IN_FLIGHT), counted from Content-Length before a body is read, and as a
chunked body arrives. Past the budget a request is answered 429 + Retry-After at once."""

from __future__ import annotations

import json
import time

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults, succeed
from twisted.internet.task import LoopingCall
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from estrom.clients import eventually, http, post, rss, scrape

MIB = 1024 * 1024
UPLOADS = 200
BUDGET = 256 * MIB  # the default
# What docs/memory.md says Beater's resident memory stays under, at the default budget.
RSS_BOUND = 1024 * MIB

# Beater's memory does not depend on the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


def _body(megabytes: int) -> bytes:
    """NDJSON of ``megabytes`` documents of about 1 MiB each."""
    line = json.dumps({"msg": "x" * (MIB - 64)}).encode() + b"\n"
    return line * megabytes


@pytest_twisted.ensureDeferred
async def test_uploads_past_the_budget_get_429_at_once_and_memory_stays_bounded(stack, sole_beater, index):
    # Each request its own percolation: 9 MiB at a time reach the engine.
    sole_beater(ESTROM_BATCH_MAX_DOCS="9")
    url = f"{stack.beater_url}/api/v0.1/docs/{index}"
    pid = stack.processes["beater"].pid
    peak = [rss(pid)]
    sampling = LoopingCall(lambda: peak.append(rss(pid)))
    sampling.start(0.1)
    body = _body(9)
    started = time.monotonic()
    answered: list[tuple[int | str, float]] = []

    async def upload() -> None:
        status, answer = await post(url, body, "application/x-ndjson")
        # 429 from the budget, before the body was read; or from the queue (ESTROM_QUEUE_MAX_BYTES),
        # after it was, while the engine takes the others.
        if status == 429 and "ESTROM_MAX_BYTES_IN_FLIGHT" in answer["error"]:
            status = "budget"
        answered.append((status, time.monotonic() - started))

    try:
        await gatherResults([ensureDeferred(upload()) for _ in range(UPLOADS)])
    finally:
        sampling.stop()
    statuses = {status: sum(1 for s, _ in answered if s == status) for status, _ in answered}
    taken = [seconds for status, seconds in answered if status == 200]
    refused = sorted(seconds for status, seconds in answered if status == "budget")
    assert set(statuses) <= {200, 429, "budget"} and taken, statuses
    # At most the budget's worth is held at once (28 bodies of 9 MiB): the others are refused.
    assert len(refused) >= UPLOADS - BUDGET // len(body), statuses
    # Refused before their bodies were read: the first refusals came long before the last upload
    # was taken (each percolation of 9 MiB takes the engine a while).
    assert refused[len(refused) // 2] < max(taken) / 2, (refused[:5], max(taken))
    assert max(peak) < RSS_BOUND, f"Beater's RSS reached {max(peak) / MIB:.0f} MiB"
    print(
        f"{statuses}: {len(taken)} taken, {len(refused)} refused by the budget (median after {refused[len(refused) // 2]:.2f} s, "
        f"last taken after {max(taken):.1f} s); Beater's RSS peaked at {max(peak) / MIB:.0f} MiB"
    )
    # Every byte held was given back.
    assert (await post(url, _body(1), "application/x-ndjson"))[0] == 200


@implementer(IBodyProducer)
class _Chunked:
    """A body of unknown length: treq sends it chunked."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes):
        self.data = data

    def startProducing(self, consumer):
        for start in range(0, len(self.data), 64 * 1024):
            consumer.write(self.data[start : start + 64 * 1024])
        return succeed(None)

    def pauseProducing(self): ...

    def resumeProducing(self): ...

    def stopProducing(self): ...


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_is_held_as_it_arrives_and_refused_past_the_budget(stack, sole_beater, index):
    sole_beater(ESTROM_MAX_BYTES_IN_FLIGHT=str(3 * MIB))
    url = f"{stack.beater_url}/api/v0.1/docs/{index}"
    response = await http.post(url, data=_Chunked(_body(4)), headers={"Content-Type": "application/x-ndjson"})
    answer = json.loads(await response.content())
    assert response.code == 429 and "ESTROM_MAX_BYTES_IN_FLIGHT" in answer["error"]
    assert response.headers.getRawHeaders(b"Retry-After") == [b"1"]
    metrics = await scrape(stack.beater_url)
    assert metrics[("estrom_http_responses_total", (("status", "429"),))] == 1
    # What it held is given back once its connection is closed: a body within the budget is
    # taken then.

    async def taken() -> bool:
        return (await post(url, _body(2), "application/x-ndjson"))[0] == 200

    await eventually(taken, what="the refused request's bytes to be given back")
