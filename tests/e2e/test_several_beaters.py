"""Several Beaters and Tailors behind one router: no stream misses a document posted after its
first bytes, or gets one twice, whichever Beater took the document and however new the
subscription. The Tailors are fed (a batch's hits once, api.FEED); the WAMP subscribers, some on
the very queries the Tailors' streams follow, get their topics' events, which leave Tailors out.

A document can reach a Beater before that Beater has the router's meta-event for a new
subscription; it still percolates the query, because registering or looking it up recorded in
the engine that it is about to be listened to. One of the Beaters here reaches the router
through a proxy that delays what the router sends it by ``LATENCY`` (a Beater on another host):
its meta-events come that much after the streams' first bytes. That Beater and one Tailor reach
the router over WebSocket, the others over RawSocket (the default). ``make several`` runs this 10
times in a row.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater

from estrom import api
from estrom.clients import HttpStream, eventually, grew, post, scrape, wamp_session

RUNS = int(os.environ.get("ESTROM_SEVERAL_RUNS", "1"))
LATENCY = "0.3"
BUCKETS = 4
WINDOW = "2"  # seconds a registration counts as "about to be listened to": short, so that
# the queries opened by ID below were registered before it and are looked up after it


@pytest.fixture
def several(stack):
    """Three Beaters and two Tailors, each Beater with the short window."""
    proxy_port = stack.ports.router + 13
    proxy = subprocess.Popen(
        [sys.executable, "-m", "tests.delay_proxy", str(proxy_port), str(stack.ports.router), LATENCY]
    )
    try:
        stack.stop("beater")
        urls = [stack.start_beater(ESTROM_ACTIVE_GRACE_SECONDS=WINDOW)]
        urls.append(
            stack.start_beater(
                "beater-far",
                port=stack.ports.beater + 11,
                ESTROM_ACTIVE_GRACE_SECONDS=WINDOW,
                ESTROM_ROUTER_URL=f"ws://127.0.0.1:{proxy_port}/ws",
            )
        )
        urls.append(
            stack.start_beater("beater-2", port=stack.ports.beater + 12, ESTROM_ACTIVE_GRACE_SECONDS=WINDOW)
        )
        # The far Beater and the second Tailor speak WebSocket to the router, the others RawSocket.
        tailors = [
            stack.tailor_url,
            stack.start_tailor("tailor-1", port=stack.ports.tailor + 11, ESTROM_ROUTER_URL=stack.router_url),
        ]
        yield urls, tailors
    finally:
        for name in ("beater-far", "beater-2", "tailor-1", "beater"):
            stack.stop(name)
        proxy.terminate()
        proxy.wait()
        stack.start_beater()


async def _out_of_the_window(beaters: list[str], index: str) -> bool:
    """Whether no Beater percolates the queries registered a moment ago any more (nobody
    subscribed to them): a document of each bucket, to each Beater, publishes nothing. These
    documents are posted before any stream opens: no stream expects them."""
    for beater in beaters:
        for bucket in range(BUCKETS):
            status, answer = await post(f"{beater}/api/v0.1/docs/{index}", {"bucket": bucket, "probe": True})
            assert status == 200, answer
            if answer["published"]:
                return False
    return True


def _failed(senders: list[Deferred]) -> bool:
    """Whether a sender stopped (only a failure stops one while sending is on)."""
    return any(sender.called for sender in senders)


class Opened:
    """One stream: its bucket, when its first bytes came (monotonic), and what it received."""

    def __init__(self, bucket: int, how: str):
        self.bucket, self.how = bucket, how
        self.since: float | None = None
        self.received: list[int] = []


@pytest_twisted.ensureDeferred
async def test_no_stream_misses_a_document_with_several_beaters(stack, index, several):
    beaters, tailors = several
    for run in range(RUNS):
        await _one_run(stack, f"{index}-{run}", beaters, tailors)


async def _both_ways(beaters: list[str], before: list) -> bool:
    """Whether every Beater has published, since ``before``, hits on the feed (for the Tailors,
    role "tailor") and on a query's topic (for the WAMP subscribers)."""
    for beater, scraped in zip(beaters, before, strict=True):
        after = await scrape(beater)
        for way in ("feed", "topic"):
            if not grew(scraped, after, "estrom_events_published_total", to=way):
                return False
    return True


async def _one_run(stack, index: str, beaters: list[str], tailors: list[str]) -> None:
    client = await wamp_session(stack.router_url)
    before = [await scrape(beater) for beater in beaters]
    # Queries opened by ID later: registered now, so that by then their registration is older
    # than the window and only the lookup records them.
    by_id = [await client.call(api.REGISTER, index, f"bucket:{n % BUCKETS} -nonce:s{n}") for n in range(6)]
    await eventually(lambda: _out_of_the_window(beaters, index), what="the registrations to leave the window")

    posted: list[tuple[int, float]] = []  # document number, when its POST started
    answered: list[tuple[int, float]] = []  # the same, once Beater answered
    streams: list[Opened] = []
    closers = []
    sending = True

    async def send(beater: int) -> None:
        # One sender per Beater, each one document at a time: the far Beater answers later.
        n = beater
        while sending:
            started = time.monotonic()
            posted.append((n, started))
            status, answer = await post(
                f"{beaters[beater]}/api/v0.1/docs/{index}", {"n": n, "bucket": n % BUCKETS}
            )
            assert status == 200, answer
            answered.append((n, started))
            n += len(beaters)
            await deferLater(reactor, 0.004, lambda: None)

    async def open_http(number: int, bucket: int, **params) -> None:
        opened = Opened(bucket, "http " + ",".join(params))
        streams.append(opened)
        stream = await HttpStream.open(tailors[number % len(tailors)], **params)
        await stream.wait_for_head()
        opened.since = time.monotonic()
        opened.stream = stream
        closers.append(stream.close)

    async def open_wamp(number: int, bucket: int, sid: str | None, nonce: str = "") -> None:
        opened = Opened(bucket, "wamp " + ("s" if sid else "q"))
        streams.append(opened)
        session = await wamp_session(stack.router_url)
        if sid is None:
            sid = await session.call(api.REGISTER, index, f"bucket:{bucket} -nonce:{nonce}")
        else:
            await session.call(api.LOOKUP, sid)
        await session.subscribe(
            lambda *hits: opened.received.extend(h["_source"]["n"] for h in hits), api.topic(sid)
        )
        opened.since = time.monotonic()
        closers.append(session.leave)

    senders = [Deferred.fromCoroutine(send(beater)) for beater in range(len(beaters))]
    openings = []
    for number in range(24):
        known = number % len(by_id)  # registered with bucket known % BUCKETS
        kind = number % 4
        if kind == 0:
            opening = open_http(
                number, number % BUCKETS, i=index, q=f"bucket:{number % BUCKETS} -nonce:h{number}"
            )
        elif kind == 1:
            opening = open_http(number, known % BUCKETS, s=by_id[known])
        elif kind == 2:
            # A browser-like subscriber registering the query an HTTP stream (a Tailor's, on
            # the feed) opened just before: the same ID, reached two ways.
            opening = open_wamp(number, (number - 2) % BUCKETS, None, f"h{number - 2}")
        else:
            opening = open_wamp(number, known % BUCKETS, by_id[known])
        openings.append(Deferred.fromCoroutine(opening))
        # Documents between one opening and the next, however fast this machine is.
        documents = len(answered)
        await eventually(
            lambda documents=documents: len(answered) > documents or _failed(senders),
            what="a document answered",
        )
    await DeferredList(openings, fireOnOneErrback=True)
    last = max(opened.since for opened in streams)
    await eventually(
        lambda: (
            {n % BUCKETS for n, started in answered if started > last} == set(range(BUCKETS))
            or _failed(senders)
        ),
        what="documents of every bucket posted after the last stream opened",
    )
    # And until each Beater, the far one too (it answers a document every 0.3 s or more), has
    # taken both ways: the streams below then checked both.
    await eventually(
        lambda: _failed(senders) or _both_ways(beaters, before), what="every Beater publishing both ways"
    )
    sending = False
    await gatherResults(senders)  # a sender's failure, if one failed

    # Each stream: every document of its bucket posted after its first bytes, once.
    for opened in streams:
        expected = {n for n, started in posted if n % BUCKETS == opened.bucket and started > opened.since}

        def complete(opened=opened, expected=expected) -> bool:
            if hasattr(opened, "stream"):
                opened.received = [hit["_source"]["n"] for hit in opened.stream.hits]
            return expected <= set(opened.received)

        assert expected, f"{opened.how}: no document of its bucket came after it opened"
        try:
            await eventually(complete, what=f"{opened.how}: every document of bucket {opened.bucket}")
        except AssertionError as e:
            when = dict(posted)
            missed = ", ".join(
                f"{n} (to Beater {n % len(beaters)}, {when[n] - opened.since:+.3f} s)"
                for n in sorted(expected - set(opened.received))
            )
            raise AssertionError(f"{e}; missed, posted after its first bytes: {missed}") from None
        assert len(opened.received) == len(set(opened.received)), f"{opened.how}: a document came twice"
        assert all(n % BUCKETS == opened.bucket for n in opened.received)
        # Order (docs/percolation.md): what one sender sent one Beater, in turn.
        for beater in range(len(beaters)):
            mine = [n for n in opened.received if n % len(beaters) == beater]
            assert mine == sorted(mine), f"{opened.how}: Beater {beater}'s documents out of order"
    for close in closers:
        close()
    client.leave()
