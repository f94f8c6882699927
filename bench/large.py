"""Phase ``large``: large request bodies parsed off the reactor's thread, and what small requests
wait meanwhile, against the same bodies parsed on it."""

from __future__ import annotations

import json
import statistics
import time
from typing import TYPE_CHECKING

from twisted.internet import reactor, task
from twisted.internet.defer import DeferredList, ensureDeferred

if TYPE_CHECKING:
    from bench.run import Bench


async def large_bodies(bench: Bench, index: str) -> None:
    """Small requests (one document, one client, each sent when the last was answered) while
    a sender posts bodies of about 9 MiB back to back to another index (one percolation at a
    time: the other of ESTROM_PERCOLATIONS_IN_FLIGHT stays free for the small ones): POST ->
    2xx of the small ones, with large bodies parsed off the reactor's thread (the default)
    and on it (as before)."""
    line = json.dumps({"user": "nobody", "msg": "x" * 1000}).encode() + b"\n"
    large = line * 9000
    small = json.dumps({"user": "u1", "msg": "GET /api 200"}).encode()
    figures = {}
    for side in ("on-reactor", "estrom"):
        url = f"{bench.urls[side]}/api/v0.1/docs/{index}"
        large_url = f"{bench.urls[side]}/api/v0.1/docs/{index}-large"
        state = {"stopping": False, "taken": 0}

        async def big(url: str = large_url, state: dict = state) -> None:
            while not state["stopping"]:
                response = await bench.http.post(
                    url, data=large, headers={"Content-Type": "application/x-ndjson"}, timeout=120
                )
                await response.content()
                state["taken"] += response.code == 200

        times: list[float] = []

        async def one(url: str = url, times: list[float] = times, side: str = side) -> None:
            started = time.perf_counter()
            response = await bench.http.post(url, data=small, headers={"Content-Type": "application/json"})
            await response.content()
            if response.code != 200:
                raise RuntimeError(f"{side} answered {response.code}")
            times.append(time.perf_counter() - started)

        senders = [ensureDeferred(big())]
        await task.deferLater(reactor, 1.0, lambda: None)  # the large bodies arrive first
        await bench.for_a_while(1, one)
        state["stopping"] = True
        await DeferredList(senders)
        times.sort()
        figures[side] = {
            "p50_ms": statistics.median(times) * 1000,
            "p99_ms": times[int(len(times) * 0.99)] * 1000,
            "small_requests": len(times),
            "large_bodies_taken": state["taken"],
        }
    figures["p99_ratio"] = figures["on-reactor"]["p99_ms"] / figures["estrom"]["p99_ms"]
    bench.results["large_bodies"] = figures
    print(f"bench: small requests while 9 MiB bodies arrive: {json.dumps(figures)}", flush=True)
