"""Phase 6 (``overload``): resident memory of Beater and Tailor under sustained overload with slow
clients."""

from __future__ import annotations

import json
import random
import time
from typing import TYPE_CHECKING

from twisted.internet import reactor, task
from twisted.internet.defer import DeferredList, ensureDeferred

from estrom.clients import never_reading_stream

if TYPE_CHECKING:
    from bench.run import Bench


async def soak(bench: Bench, index: str) -> None:
    """Sustained overload (more than Beater takes) with slow stream clients."""
    slow = [
        never_reading_stream(bench.stack.ports.tailor, index, f"user:u{i}") for i in range(bench.args.clients)
    ]
    url = f"{bench.urls['estrom']}/api/v0.1/docs/{index}"
    marks = sorted(float(s) for s in bench.args.soak.split(","))
    stopping = False
    refused = 0

    # More documents in flight than Beater lets wait (64 x 1,000 > 50,000): some are refused.
    bodies = [
        json.dumps(
            [{"user": f"u{random.randrange(bench.args.clients)}", "blob": "x" * 200} for _ in range(1000)]
        ).encode()
        for _ in range(8)
    ]

    async def sender(n: int):
        nonlocal refused
        while not stopping:
            response = await bench.http.post(
                url, data=bodies[n % len(bodies)], headers={"Content-Type": "application/json"}
            )
            refused += response.code == 429
            await response.content()

    senders = [ensureDeferred(sender(n)) for n in range(64)]
    started = time.monotonic()
    soak = {}
    for mark in marks:
        await task.deferLater(reactor, max(0, started + mark - time.monotonic()), lambda: None)
        soak[f"{mark:g}s"] = bench.memory()
        print(f"bench: overload {mark:g} s: {soak[f'{mark:g}s']}", flush=True)
    stopping = True
    await DeferredList(senders)
    for client in slow:
        client.close()
    first, last = soak[f"{marks[0]:g}s"], soak[f"{marks[-1]:g}s"]
    bench.results["memory"]["overload"] = soak
    bench.results["memory"]["overload_growth"] = {name: last[name] / first[name] - 1 for name in first}
    bench.results["memory"]["refused_429"] = refused
