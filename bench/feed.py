"""The feed through the router, its events decoded by the router or passed through opaque
(``make bench``, phase ``feed``; bench/run.py runs it and prints it).

A publisher of role ``beater`` sends feed events (api.FEED) of a batch's hits, 100 log documents
each as Beater makes them, to one subscriber of role ``tailor``: first as WAMP arguments, which
crossbar decodes and encodes again, then as one opaque CBOR payload (estrom.wamp.FeedCodec),
which it hands on as it came; in turn, ROUNDS times. The router's CPU per event, and the two
ends' (this process: encoding and decoding), medians of the rounds.
"""

from __future__ import annotations

import statistics
import uuid
from typing import TYPE_CHECKING

from autobahn.wamp.types import PublishOptions

from estrom import api
from estrom.clients import eventually, wamp_session
from estrom.wamp import FeedCodec

if TYPE_CHECKING:
    from bench.run import Bench

EVENTS = 2000
HITS = 100  # a batch's matching hits
ROUNDS = 3
AT_ONCE = 100  # events sent before waiting for the router's acknowledgement of the last one
_ACKNOWLEDGED = PublishOptions(acknowledge=True)


def _hits(count: int) -> list[dict]:
    return [
        {
            "_index": "bench-feed",
            "_id": uuid.uuid4().hex,
            "_cursor": f"{n:016x}-0001",
            "_source": {
                "@timestamp": "2026-12-06T21:30:00.000Z",
                "level": "error",
                "service": f"s{n % 48}",
                "status": 500 + n % 4,
                "duration_ms": 12.5 + n,
                "message": f"request {n} to the upstream timed out after 30 s; retrying on another host",
            },
        }
        for n in range(count)
    ]


async def feed(bench: Bench) -> dict:
    stack = bench.stack
    publisher = await wamp_session(stack.router_url, {"ticket": {"authid": "beater", "ticket": stack.secret}})
    subscriber = await wamp_session(
        stack.router_url, {"ticket": {"authid": "tailor", "ticket": stack.tailor_secret}}
    )
    subscriber.set_payload_codec(FeedCodec())  # decodes what is encoded; the rest is as usual
    received = [0]

    def count(*hits: dict, **more: object) -> None:
        received[0] += 1

    await subscriber.subscribe(count, api.FEED)
    hits = _hits(HITS)
    matches = {api.MATCHES: {f"{n:016x}": [n] for n in range(HITS)}}
    runs: dict[str, list[dict[str, float]]] = {"arguments": [], "opaque": []}
    try:
        for _ in range(ROUNDS):
            for how, done in runs.items():
                publisher.set_payload_codec(FeedCodec() if how == "opaque" else None)
                before, received[0] = bench.cpu(), 0
                for start in range(0, EVENTS, AT_ONCE):
                    for number in range(start, start + AT_ONCE):
                        last = number == start + AT_ONCE - 1
                        published = publisher.publish(
                            api.FEED, *hits, options=_ACKNOWLEDGED if last else None, **matches
                        )
                    await published
                await eventually(lambda: received[0] == EVENTS, what="every feed event received")
                after = bench.cpu()
                done.append(
                    {part: (after[part] - before[part]) * 1000 / EVENTS for part in ("router", "bench")}
                )
    finally:
        publisher.leave()
        subscriber.leave()
    figures = {
        how: {
            f"{part}_ms_per_event": statistics.median(run[part] for run in done)
            for part in ("router", "bench")
        }
        for how, done in runs.items()
    }
    figures["hits_per_event"] = HITS
    figures["router_opaque_over_arguments"] = (
        figures["opaque"]["router_ms_per_event"] / figures["arguments"]["router_ms_per_event"]
    )
    return figures
