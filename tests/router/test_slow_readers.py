"""A WAMP subscriber that stops reading cannot make the router hold without bound, over
WebSocket or RawSocket.

Twenty anonymous subscribers stop reading (their client stops taking bytes off the socket), one
keeps reading, and 20 MB of hits are published to their topic. Without a bound the router worker
would keep what each stalled one is owed (about 20 × 20 MB less what the kernel buffers hold);
with it, each stalled session is closed once it holds 2 MiB unsent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.task import LoopingCall

from estrom import api
from estrom.clients import eventually, post, rss, wamp_session

# The router, the page and the command do not depend on the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)

STALLED = 20
REQUESTS, DOCUMENTS, BLOB = 20, 1000, "x" * 950  # 20 MB of hits
GROWTH_BOUND = 150 * 1024 * 1024  # measured: +73 MiB with the bound, +370 MiB without


def router_workers(controller: int) -> list[int]:
    """The PIDs of crossbar's worker processes (children of the controller)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == controller:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.parametrize("transport", ["websocket", "rawsocket"])
@pytest_twisted.ensureDeferred
async def test_subscribers_that_stop_reading_are_closed_and_the_router_stays_bounded(stack, index, transport):
    router_url = stack.router_url if transport == "websocket" else stack.router_rawsocket_url
    reader = await wamp_session(router_url)
    sid = await reader.call(api.REGISTER, index, "slow:readers")
    received = []
    await reader.subscribe(lambda *hits: received.extend(hits), api.topic(sid))
    stalled, lost = [], []
    for _ in range(STALLED):
        session = await wamp_session(router_url)
        await session.subscribe(lambda *hits: None, api.topic(sid))
        session.on("leave", lambda *args, session=session: lost.append(session))
        stalled.append(session)
    for session in stalled:
        session.transport.transport.pauseProducing()  # reads nothing more off its socket
    workers = router_workers(stack.processes["router"].pid)
    before = sum(rss(pid) for pid in workers)
    peak = [before]
    sampler = LoopingCall(lambda: peak.append(sum(rss(pid) for pid in workers)))
    sampler.start(0.1)
    try:
        url = f"{stack.beater_url}/api/v0.1/docs/{index}"
        for request in range(REQUESTS):
            documents = [
                {"slow": "readers", "n": request * DOCUMENTS + n, "blob": BLOB} for n in range(DOCUMENTS)
            ]
            status, _ = await post(url, documents)
            assert status == 200
        await eventually(
            lambda: len(received) == REQUESTS * DOCUMENTS, timeout=60, what="every hit at the reader"
        )
    finally:
        sampler.stop()
    assert max(peak) - before < GROWTH_BOUND, f"router grew by {(max(peak) - before) >> 20} MiB"
    assert [hit["_source"]["n"] for hit in received] == list(range(REQUESTS * DOCUMENTS))
    for session in stalled:  # read again: each finds its connection closed by the router
        session.transport.transport.resumeProducing()
    await eventually(lambda: len(lost) == STALLED, what="the stalled sessions to be closed")
    assert "unsent bytes" in stack.tail("router", lines=400)
    reader.leave()
