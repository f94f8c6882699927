"""The benchmark's phases of reading through Tailor, the way people tail (``make bench``,
phases ``http`` and ``everyday``; bench/run.py runs them and prints their goals).

- ``http``, the worst case for delivery: one HTTP stream per stored query (1,000 and 10,000),
  each document matching one of them; what the streams receive, against the engine alone
  percolating the same documents, and the router's CPU per document.
- ``everyday``: 1,000 stored queries, 50 of them listened to over HTTP streams (2 broad
  ``level:error``, 48 narrow ``service:sN AND level:error``), about 10 % errors among the
  documents; estrom against the engine alone percolating every document for those 50 queries.

The streams here count their hits without parsing them (a hit is one ``"_cursor"``): the
benchmark's own Python must not be what is measured.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, gatherResults

from bench.common import spent
from estrom import api
from estrom.clients import HttpStream, eventually, grew, post, scrape

if TYPE_CHECKING:
    from bench.run import Bench

MARK = b'"_cursor"'
EVERYDAY_QUERIES = 1000
NARROW = 48  # services, each with its own narrow stream
ERRORS = 0.1  # of the everyday documents
GRACE_SECONDS = 10  # ESTROM_ACTIVE_GRACE_SECONDS of the benchmark's Beaters


class CountingStream(HttpStream):
    """A stream that counts its hits (one ``"_cursor"`` each) and parses nothing past its head."""

    def __init__(self, keep: bool = False, on_hit: Any = None) -> None:
        super().__init__(keep=False)
        self._tail = b""

    def dataReceived(self, data: bytes) -> None:
        if not self.headed:
            self.raw += data
        seen = self._tail + data
        self.received += seen.count(MARK)
        self._tail = data[-(len(MARK) - 1) :]  # a mark cut in two is counted once, whole
        self._waits.check()


async def open_streams(tailor_url: str, index: str, queries: list[str]) -> list[CountingStream]:
    """One counting stream per query, 100 opening at a time."""
    streams: list[CountingStream] = []
    for start in range(0, len(queries), 100):
        opening = [
            Deferred.fromCoroutine(CountingStream.open(tailor_url, i=index, q=query))
            for query in queries[start : start + 100]
        ]
        batch = await gatherResults(opening)
        for stream in batch:
            if stream.status != 200:
                raise RuntimeError(f"Tailor answered {stream.status} to a stream")
            await stream.wait_for_head()
        streams += batch
    return streams


def received(streams: list[CountingStream]) -> int:
    return sum(stream.received for stream in streams)


async def http_streams(bench: Bench, count: int) -> dict[str, Any]:
    """The worst case: ``count`` streams, one per query ``user:u<n>`` of ``bench-<count>``, and
    the throughput run's load (each document matches one query)."""

    index = f"bench-{count}"
    queries = [f"user:u{n}" for n in range(count)]
    started = time.monotonic()
    streams = await open_streams(bench.stack.tailor_url, index, queries)
    opened = time.monotonic() - started
    print(f"bench: {count} HTTP streams open in {opened:.1f} s", flush=True)
    runs, cpu_ms = [], []
    try:
        for _ in range(bench.args.repeats):
            before, cpu_before = received(streams), bench.cpu()
            docs_per_s = await bench.deliver_for_a_while(
                bench.urls["estrom"], index, count, lambda before=before: received(streams) - before
            )
            used = spent(cpu_before, bench.cpu())
            delivered = max(received(streams) - before, 1)
            runs.append(docs_per_s)
            cpu_ms.append({part: 1000 * seconds / delivered for part, seconds in used.items()})
    finally:
        for stream in streams:
            stream.close()
    engine = await bench.engine_alone(index, count)
    median = sorted(runs)[len(runs) // 2]
    cpu = cpu_ms[runs.index(median)]
    return {
        "streams": count,
        "opened_in_s": round(opened, 1),
        "docs_per_s": median,
        "runs": runs,
        "engine_docs_per_s": engine,
        "estrom_over_engine": median / engine,
        "cpu_ms_per_doc": {part: round(ms, 4) for part, ms in cpu.items()},
    }


async def everyday(bench: Bench) -> dict[str, Any]:
    """1,000 stored queries, 50 listened to over HTTP streams, 10 % errors."""
    index = "bench-everyday"
    # Two people watch every error, 48 each watch a service's (49 queries, 50 streams).
    listened = ["level:error", "level:error"] + [f"service:s{n} AND level:error" for n in range(NARROW)]
    stored = len(set(listened))
    others = [f"service:s{n} AND level:warn AND user:u{n}" for n in range(EVERYDAY_QUERIES - stored)]
    limit = DeferredSemaphore(8)
    ids = await DeferredList(
        [limit.run(bench.session.call, api.REGISTER, index, query) for query in listened + others],
        fireOnOneErrback=True,
    )
    listened_ids = [sid for _, sid in ids[: len(listened)]]
    streams = await open_streams(bench.stack.tailor_url, index, listened)

    async def left_out() -> bool:  # the registrations' window is over: only the 50 are percolated
        before = await scrape(bench.urls["estrom"])
        await post(f"{bench.urls['estrom']}/api/v0.1/docs/{index}", {"level": "info", "service": "s0"})
        return grew(before, await scrape(bench.urls["estrom"]), "estrom_documents_not_percolated_total") == 1

    await eventually(left_out, timeout=GRACE_SECONDS + 60, what="the presearcher to leave a document out")

    def documents(size: int) -> list[dict]:
        return [
            {
                "service": f"s{random.randrange(NARROW)}",
                "level": "error" if random.random() < ERRORS else "info",
                "msg": random.choice(("GET /api 200", "timeout talking to db", "user logged in")),
            }
            for _ in range(size)
        ]

    runs, cpu_ms, left_out = [], [], []
    try:
        for _ in range(bench.args.repeats):
            before, cpu_before = received(streams[1:]), bench.cpu()
            metrics = await scrape(bench.urls["estrom"])
            docs_per_s = await bench.deliver_for_a_while(
                bench.urls["estrom"],
                index,
                len(listened),
                # the second broad stream gets what the first does: one of them is counted
                lambda before=before: received(streams[1:]) - before,
                documents,
            )
            used = spent(cpu_before, bench.cpu())
            sent = max(bench.last_sent, 1)
            left_out.append(
                grew(metrics, await scrape(bench.urls["estrom"]), "estrom_documents_not_percolated_total")
                / sent
            )
            runs.append(docs_per_s)
            cpu_ms.append({part: 1000 * seconds / sent for part, seconds in used.items()})
    finally:
        for stream in streams:
            stream.close()
    engine = await bench.engine_alone(index, len(listened), documents, listened_ids)
    median = sorted(runs)[len(runs) // 2]
    return {
        "stored_queries": stored + len(others),
        "listened": len(listened),
        "errors": ERRORS,
        "docs_per_s": median,
        "runs": runs,
        "engine_docs_per_s": engine,
        "estrom_over_engine": median / engine,
        "cpu_ms_per_doc": {part: round(ms, 4) for part, ms in cpu_ms[runs.index(median)].items()},
        "not_percolated": round(left_out[runs.index(median)], 3),
    }
