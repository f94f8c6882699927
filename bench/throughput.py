"""Phases 1 and 2 (``throughput``, ``filter``): ingest-to-delivery throughput of the naive design,
estrom's batched pipeline and the engine alone, with CPU per document; and what percolating only
listened-to queries saves."""

from __future__ import annotations

import json
import random
import statistics
import time
from typing import TYPE_CHECKING

from bench.common import added, spent
from estrom import api
from estrom.clients import percolations, wamp_session

if TYPE_CHECKING:
    from bench.run import Bench


async def throughput(bench: Bench, count: int) -> None:
    """Each repeat runs the naive design, the batched one, and the engine alone with the
    batched run's mean batch, in turn: the engine warms up as the runs go, and no side gets
    all the warm runs."""
    index = f"bench-{count}"
    await bench.register(index, count)
    # The engine's JIT compiles its percolation paths over the first half minute or so of
    # load (its CPU per document falls by 40 % meanwhile): warm it up first, so that the
    # design runs, which come first in each repeat, do not pay for it.
    for batch in (1, 100):
        await bench.engine_direct(index, count, batch)
    warm_until = time.monotonic() + bench.args.warm_up
    while time.monotonic() < warm_until:
        await bench.engine_direct(index, count, 1000)
    runs: dict[str, list[float]] = {"naive": [], "batched": [], "engine": []}
    batches: list[float] = []
    documents = dict.fromkeys(runs, 0)
    cpu = {design: {} for design in runs}
    for _ in range(bench.args.repeats):
        for design in ("naive", "batched"):
            before, cpu_before = await percolations(bench.stack.engine_url, index, bench.http), bench.cpu()
            docs_per_s, sent, received = await bench.load(bench.urls[design], index, count)
            cpu[design] = added(cpu[design], spent(cpu_before, bench.cpu()))
            runs[design].append(docs_per_s)
            documents[design] += received
            if design == "batched":
                batches.append(
                    sent / max(await percolations(bench.stack.engine_url, index, bench.http) - before, 1)
                )
        cpu_before = bench.cpu()
        docs_per_s, percolated = await bench.engine_direct(index, count, max(1, round(batches[-1])))
        cpu["engine"] = added(cpu["engine"], spent(cpu_before, bench.cpu()))
        runs["engine"].append(docs_per_s)
        documents["engine"] += percolated
    figures = {
        design: {
            "docs_per_s": statistics.median(runs[design]),
            "runs": runs[design],
            "documents": documents[design],
            "cpu_seconds": cpu[design],
        }
        for design in runs
    }
    figures["batched"]["mean_batch"] = statistics.median(batches)
    figures["engine"]["batch"] = max(1, round(statistics.median(batches)))
    delivered, used = documents["batched"], cpu["batched"]
    figures["batched"]["cpu_ms_per_doc"] = {
        "beater": 1000 * used["beater-batched"] / delivered,
        "router": 1000 * used["router"] / delivered,
        "estrom": 1000 * (used["beater-batched"] + used["router"]) / delivered,
        "engine": 1000 * used["engine"] / delivered,
    }
    figures["engine"]["cpu_ms_per_doc"] = 1000 * cpu["engine"]["engine"] / documents["engine"]
    figures["batched_over_naive"] = figures["batched"]["docs_per_s"] / figures["naive"]["docs_per_s"]
    figures["estrom_over_engine"] = figures["batched"]["docs_per_s"] / figures["engine"]["docs_per_s"]
    figures["cpu_estrom_over_engine"] = (
        figures["batched"]["cpu_ms_per_doc"]["estrom"] / figures["engine"]["cpu_ms_per_doc"]
    )
    figures["unanswered_requests"], bench.failures = bench.failures, {}
    bench.results["throughput"][str(count)] = figures
    print(f"bench: {count} queries: {json.dumps(figures)}", flush=True)


async def filter_savings(bench: Bench, count: int) -> None:
    """10,000 stored queries, 100 with a subscriber: percolating only those vs all."""
    index = f"bench-{count}"
    # The prefix subscription would switch the filter off: leave it for this run.
    bench.session.leave()
    bench.session = await wamp_session(bench.stack.router_url)
    listened = 100
    for i in range(listened):
        sid = await bench.session.call(api.REGISTER, index, f"user:u{i}")
        await bench.session.subscribe(bench.count, api.topic(sid))
    figures = {}
    for design, url in (("only_listened", bench.urls["estrom"]), ("all", bench.urls["batched"])):
        runs = [await _accepted_per_s(bench, url, index, count) for _ in range(bench.args.repeats)]
        figures[design] = {"docs_per_s": statistics.median(runs), "runs": runs}
    figures["ratio"] = figures["only_listened"]["docs_per_s"] / figures["all"]["docs_per_s"]
    bench.results["active_filter"] = {"queries": count, "listened": listened, **figures}
    print(f"bench: active filter: {json.dumps(figures)}", flush=True)


async def _accepted_per_s(bench: Bench, beater_url: str, index: str, count: int) -> float:
    """Documents/s Beater accepts (percolated and published) from JSON batches of 100."""
    url = f"{beater_url}/api/v0.1/docs/{index}"
    accepted = 0

    async def send():
        nonlocal accepted
        response = await bench.http.post(
            url, json=[{"user": f"u{random.randrange(count)}"} for _ in range(100)]
        )
        if response.code == 200:
            accepted += (await response.json())["accepted"]
        else:
            await response.content()

    elapsed = await bench.for_a_while(4, send)
    return accepted / elapsed
