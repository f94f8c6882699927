"""Phase 4 (``streams``): many HTTP streams on one Tailor at a steady rate: every stream's hits,
POST-to-hit latency, memory and CPU per stream."""

from __future__ import annotations

import gc
import json
import random
import statistics
import time
from typing import TYPE_CHECKING

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

from bench.common import latency_stream, mib, spent, until
from estrom.clients import HttpStream, rss

if TYPE_CHECKING:
    from bench.run import Bench


async def streams(bench: Bench) -> None:
    """--streams HTTP streams over --stream-queries queries on one Tailor; --rate
    documents/s, each matching one query (so --streams / --stream-queries streams)."""
    index, streams, queries = "bench-streams", bench.args.streams, bench.args.stream_queries
    latencies: list[float] = []
    memory_before = mib(rss(bench.stack.processes["tailor"].pid))
    started = time.monotonic()
    opened: list[HttpStream] = []
    for start in range(0, streams, 100):  # 100 at a time, each batch once the last is open
        opened += await gatherResults(
            [
                Deferred.fromCoroutine(
                    latency_stream(bench.stack.tailor_url, index, f"user:u{n % queries}", latencies)
                )
                for n in range(start, min(streams, start + 100))
            ]
        )
    open_seconds = time.monotonic() - started
    # The bench holds 10,000 clients' objects: a full collection of them takes up to half a
    # second, which every hit in flight would count as latency. Exempt them from collection.
    gc.collect()
    gc.freeze()
    memory_open = mib(rss(bench.stack.processes["tailor"].pid))
    print(f"bench: {streams} streams open in {open_seconds:.1f} s", flush=True)
    url = f"{bench.urls['estrom']}/api/v0.1/docs/{index}"
    expected = [0] * queries
    sent = 0
    cpu_before = bench.cpu()
    started = time.monotonic()

    async def tick():
        # As many documents as the rate asks for by now: a late tick catches up.
        nonlocal sent
        due = int(bench.args.rate * (time.monotonic() - started)) - sent
        if due <= 0:
            return
        documents = []
        for _ in range(due):
            user = random.randrange(queries)
            expected[user] += 1
            documents.append({"user": f"u{user}", "sent_at": time.time()})
        sent += due
        response = await bench.http.post(url, json=documents)
        await response.content()
        if response.code != 200:
            raise RuntimeError(f"Beater answered {response.code}")

    loop = task.LoopingCall(lambda: ensureDeferred(tick()))
    loop.start(0.01)
    await task.deferLater(reactor, bench.args.stream_seconds / 2, lambda: None)
    memory_load = mib(rss(bench.stack.processes["tailor"].pid))
    await task.deferLater(reactor, bench.args.stream_seconds / 2, lambda: None)
    loop.stop()
    wanted = sent * streams // queries
    await until(lambda: len(latencies) >= wanted, 60)
    cpu = spent(cpu_before, bench.cpu())
    short = sum(1 for n, stream in enumerate(opened) if stream.received != expected[n % queries])
    for stream in opened:
        stream.close()
    gc.unfreeze()
    quantiles = statistics.quantiles(latencies, n=100)
    bench.results["streams"] = {
        "streams": streams,
        "queries": queries,
        "offered_docs_per_s": bench.args.rate,
        "opened_in_s": open_seconds,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "hits_received": len(latencies),
        "hits_expected": wanted,
        "streams_missing_hits": short,
        "tailor_mib": {"before": memory_before, "open": memory_open, "load": memory_load},
        "kib_per_stream": (memory_open - memory_before) * 1024 / streams,
        "cpu_seconds": cpu,
        "tailor_cpu_ms_per_hit": 1000 * cpu["tailor"] / max(len(latencies), 1),
    }
    bench.results["memory"]["load"] = bench.memory()
    print(f"bench: streams: {json.dumps(bench.results['streams'])}", flush=True)
