"""Phase 4b (``aggs``): the aggregated tail: frames on time, documents counted, memory and CPU of
many aggregation streams on one Tailor."""

from __future__ import annotations

import datetime
import itertools
import json
import random
import time
from typing import TYPE_CHECKING

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, gatherResults

from bench.common import mib, percentiles, spent, until
from estrom.clients import AggsStream, rss

if TYPE_CHECKING:
    from bench.run import Bench


ALONE = 200  # aggregation streams that each count for themselves (window=all)


async def aggregations(bench: Bench) -> None:
    """One aggregation stream (by two fields, statistics of one, every 1 s) on a query that
    matches every document of --aggs-rate documents/s: Tailor's CPU per document aggregated
    and each frame's lateness. Then --aggs-streams such streams on one Tailor, at a tenth of
    the rate: memory per stream, and lateness."""
    index = "bench-aggs"
    params = {"i": index, "q": "service:*", "by": "service,host", "stats": "ms", "every": "1s"}

    async def offer(rate: int, seconds: float) -> int:
        url = f"{bench.urls['estrom']}/api/v0.1/docs/{index}"
        sent, started = 0, time.monotonic()
        limit = DeferredSemaphore(8)

        async def post_some(documents: list[dict]) -> None:
            response = await bench.http.post(url, json=documents)
            await response.content()

        posting = []
        while time.monotonic() - started < seconds:
            due = int(rate * (time.monotonic() - started)) - sent
            if due <= 0:
                await task.deferLater(reactor, 0.005, lambda: None)
                continue
            due = min(due, 500)
            documents = [
                {
                    "service": f"s{random.randrange(20)}",
                    "host": f"h{random.randrange(500)}",
                    "ms": random.lognormvariate(3, 1),
                }
                for _ in range(due)
            ]
            sent += due
            posting.append(limit.run(lambda d=documents: Deferred.fromCoroutine(post_some(d))))
            await task.deferLater(reactor, 0, lambda: None)
        await DeferredList(posting)
        return sent

    def lateness(streams: list[AggsStream], every: float) -> list[float]:
        """How late each frame came after the one before it, past ``every`` (ms)."""
        late = []
        for stream in streams:
            times = [datetime.datetime.fromisoformat(frame["at"]).timestamp() for frame in stream.hits]
            late += [max(0.0, (b - a - every) * 1000) for a, b in itertools.pairwise(times)]
        return late

    # One stream, at the full rate.
    warm = await offer(1000, 2)  # the index and its mapping exist, the query is registered
    one = await AggsStream.open(bench.stack.tailor_url, **params)
    await one.wait_for_head()
    cpu_before = bench.cpu()
    seconds = bench.args.stream_seconds
    sent = await offer(bench.args.aggs_rate, seconds)
    await until(lambda: bool(one.hits) and one.hits[-1]["count"] >= sent, 60)
    cpu = spent(cpu_before, bench.cpu())
    counted = one.hits[-1]["count"] if one.hits else 0
    late_one = lateness([one], 1.0)
    one.close()
    # Many streams, at a tenth of the rate.
    before = mib(rss(bench.stack.processes["tailor"].pid))
    streams: list[AggsStream] = []
    for start in range(0, bench.args.aggs_streams, 100):
        streams += await gatherResults(
            [
                Deferred.fromCoroutine(AggsStream.open(bench.stack.tailor_url, **params))
                for _ in range(start, min(bench.args.aggs_streams, start + 100))
            ]
        )
    for stream in streams:
        await stream.wait_for_head()
    opened = mib(rss(bench.stack.processes["tailor"].pid))
    many_sent = await offer(bench.args.aggs_rate // 10, seconds)
    loaded = mib(rss(bench.stack.processes["tailor"].pid))
    late_many = lateness(streams, 1.0)
    frames = sorted(len(stream.hits) for stream in streams)
    for stream in streams:
        stream.close()
    # Streams that count for themselves (window=all: since each opened): one aggregation each.
    alone_before = mib(rss(bench.stack.processes["tailor"].pid))
    alone: list[AggsStream] = await gatherResults(
        [
            Deferred.fromCoroutine(AggsStream.open(bench.stack.tailor_url, **params, window="all"))
            for _ in range(ALONE)
        ]
    )
    for stream in alone:
        await stream.wait_for_head()
    # Each counts every hit itself: the rate that makes the one stream's --aggs-rate in all.
    alone_sent = await offer(bench.args.aggs_rate // ALONE, seconds)
    alone_loaded = mib(rss(bench.stack.processes["tailor"].pid))
    late_alone = lateness(alone, 1.0)
    for stream in alone:
        stream.close()
    bench.results["aggs"] = {
        "offered_docs_per_s": bench.args.aggs_rate,
        "sent": sent,
        "warm_up_sent": warm,
        "counted": counted,
        "docs_per_s_aggregated": counted / seconds,
        "tailor_cpu_us_per_doc": 1e6 * cpu["tailor"] / max(counted, 1),
        "frame_lateness_ms": percentiles(late_one),
        "streams": len(streams),
        "streams_docs_sent": many_sent,
        "tailor_mib": {"before": before, "open": opened, "load": loaded},
        "kib_per_stream": (loaded - before) * 1024 / max(len(streams), 1),
        "frame_lateness_ms_many": percentiles(late_many),
        "frames_per_stream": {"min": frames[0], "median": frames[len(frames) // 2]} if frames else {},
        "alone": {
            "streams": len(alone),
            "docs_sent": alone_sent,
            "hits_aggregated_per_s": alone_sent * len(alone) / seconds,
            "kib_per_stream": (alone_loaded - alone_before) * 1024 / max(len(alone), 1),
            "frame_lateness_ms": percentiles(late_alone),
        },
        "seconds": seconds,
    }
    print(f"bench: aggs: {json.dumps(bench.results['aggs'])}", flush=True)
