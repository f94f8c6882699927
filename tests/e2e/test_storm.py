"""Many streams at once on one Tailor: opened at a steady pace, every one opens and receives.

`make test` opens ESTROM_STORM_STREAMS (default 1,000) streams over a tenth as many queries;
`make soak` opens 10,000 over 1,000.
"""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater

from estrom.clients import HttpStream, eventually, post

STREAMS = int(os.environ.get("ESTROM_STORM_STREAMS", "1000"))
PER_SECOND = int(os.environ.get("ESTROM_STORM_RATE", "250"))  # streams opened per second


@pytest_twisted.ensureDeferred
async def test_streams_opened_at_a_steady_pace_all_open_and_receive(stack, index):
    queries = max(1, STREAMS // 10)
    opens = []
    for n in range(STREAMS):
        opens.append(Deferred.fromCoroutine(HttpStream.open(stack.tailor_url, i=index, q=f"q:{n % queries}")))
        if n % 50 == 49:  # the pace: 50 at a time
            await deferLater(reactor, 50 / PER_SECOND, lambda: None)
    results = await DeferredList(opens)
    streams = [stream for ok, stream in results if ok]
    assert len(streams) == STREAMS, [failure for ok, failure in results if not ok][:3]
    await gatherResults(
        [s.wait_for(lambda s=s: s.headed or s.ended, "its head", timeout=60) for s in streams]
    )
    assert [s.raw for s in streams if s.status != 200][:3] == []
    url = f"{stack.beater_url}/api/v0.1/docs/{index}"
    for start in range(0, queries, 500):
        status, _ = await post(url, [{"q": str(n)} for n in range(start, min(queries, start + 500))])
        assert status == 200
    await eventually(lambda: all(len(s.hits) == 1 for s in streams), timeout=60, what="a hit on every stream")
    for stream in streams:
        stream.close()
