"""Phase 3 (``sequential``): one document per request on one keep-alive connection, a stream
listening, against sequential one-document percolate requests to the engine."""

from __future__ import annotations

import json
import statistics
import time
from typing import TYPE_CHECKING

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.web.client import Agent, HTTPConnectionPool

from bench.common import latency_stream, p50
from estrom.clients import scrape

if TYPE_CHECKING:
    from bench.run import Bench


async def sequential(bench: Bench, index: str) -> None:
    """One client, one document per request, each sent when the last was answered, on one
    keep-alive connection; a stream listening. Against the same client sending sequential
    one-document percolate requests to the engine, on the same percolator index."""
    stream = await latency_stream(bench.stack.tailor_url, index, "user:u1", [])
    pool = HTTPConnectionPool(reactor)  # one kept-alive connection, closed at the end
    pool.maxPersistentPerHost = 1
    http = HTTPClient(Agent(reactor, pool=pool))
    document = {"user": "u1", "msg": "GET /api 200"}
    percolate = {
        "query": {"percolate": {"field": "estrom_query", "documents": [document]}},
        "_source": False,
        "size": 1000,
        "track_total_hits": False,
    }
    sides = {
        "estrom": (f"{bench.urls['estrom']}/api/v0.1/docs/{index}", json.dumps(document).encode()),
        "engine": (
            f"{bench.stack.engine_url}/estrom-queries-{index}/_search",
            json.dumps(percolate).encode(),
        ),
    }
    figures = {}
    for side, (url, body) in sides.items():
        times: list[float] = []
        scraped = await scrape(bench.urls["estrom"])

        async def one(
            url: str = url, body: bytes = body, times: list[float] = times, side: str = side
        ) -> None:
            started = time.perf_counter()
            response = await http.post(url, data=body, headers={"Content-Type": "application/json"})
            await response.content()
            if response.code != 200:
                raise RuntimeError(f"{side} answered {response.code}")
            times.append(time.perf_counter() - started)

        for _ in range(200):  # warm both alike
            await one()
        times.clear()
        elapsed = await bench.for_a_while(1, one)
        figures[side] = {
            "p50_ms": statistics.median(times) * 1000,
            "requests_per_s": len(times) / elapsed,
            "requests": len(times),
        }
        if side == "estrom":  # where a lone document's time goes, inside Beater
            after = await scrape(bench.urls["estrom"])
            figures[side]["stage_p50_ms"] = {
                stage: round(1000 * p50(scraped, after, "estrom_stage_seconds", stage), 3)
                for stage in ("parse", "pipeline", "percolate", "publish", "answer")
            }
    await pool.closeCachedConnections()
    stream.close()
    figures["ratio"] = figures["estrom"]["requests_per_s"] / figures["engine"]["requests_per_s"]
    bench.results["sequential"] = figures
    print(f"bench: sequential sender: {json.dumps(figures)}", flush=True)
