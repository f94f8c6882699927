"""The benchmark: `make bench` (or `python -m bench.run`).

Starts a real OpenSearch node and the real stack on ports of their own, then measures, each a
median of repeated runs, and prints every figure beside its goal (issue 9):
  1. ingest-to-delivery throughput with 1,000 and 10,000 registered queries, for the naive
     design (one percolate request per document, on a pool of kept-alive connections) and
     estrom's batched pipeline, against the engine's own percolate throughput for the same
     documents, queries and batch sizes; CPU seconds of every part, and CPU per document;
     the same run with the senders on 1 and on 2 Beaters, and through 1 router worker, 2 router
     workers joined by rlinks, and 1 router worker behind 2 proxy workers;
  2. what percolating only listened-to queries saves;
  3. a sequential sender: one document per request on one keep-alive connection, a stream
     listening, against sequential one-document percolate requests to the engine;
  4. 10,000 concurrent HTTP streams on one Tailor (1,000 queries, 10 streams each) at
     500 documents/s: every stream's hits, POST-to-hit latency, memory and CPU per stream;
  5. the live tail page in Chromium with 7,000 matching documents/s, its field list and
     histogram on: frames drawn, a key typed answered, documents counted; what highlights (why
     it matched) cost: the batched run with every query registered for them;
  6. resident memory of Beater and Tailor at rest, under load, and under sustained overload
     with slow clients.
Writes the figures as JSON (bench/results/<time>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from autobahn.wamp.types import SubscribeOptions
from twisted.internet import task
from twisted.internet.defer import DeferredList, DeferredSemaphore, ensureDeferred

from bench import (
    aggs,
    feed,
    highlight,
    large,
    overload,
    page,
    report,
    sequential,
    several,
    streams,
    tail,
    throughput,
)
from bench.common import ALL_QUERIES, PORTS, added, crossbar_process, mib, spent, until, user_documents
from dev.stack import ROOT, Stack
from estrom import api
from estrom.clients import http_client, percolations, rss, wamp_session

# The seed's design (bench.naive): every document percolated on its own, on arrival.
NAIVE = {
    "ESTROM_BATCH_MAX_DOCS": "1",
    "ESTROM_BATCH_MAX_WAIT_MS": "0",
    "ESTROM_PERCOLATIONS_IN_FLIGHT": "64",
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", default="1000,10000", help="registered query counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is kept)")
    parser.add_argument(
        "--warm-up", type=float, default=40.0, help="seconds of engine load before the throughput runs"
    )
    parser.add_argument("--senders", type=int, default=32, help="concurrent senders")
    parser.add_argument(
        "--batch-docs",
        type=int,
        default=100,
        help="documents per request (Logstash json_batch sends up to 125)",
    )
    parser.add_argument("--rate", type=int, default=500, help="documents/s offered in the streams run")
    parser.add_argument("--streams", type=int, default=10_000, help="HTTP streams on one Tailor")
    parser.add_argument("--stream-queries", type=int, default=1000, help="distinct queries of the streams")
    parser.add_argument("--stream-seconds", type=float, default=10.0, help="length of the streams run")
    parser.add_argument("--clients", type=int, default=100, help="slow stream clients in the overload run")
    parser.add_argument(
        "--aggs-rate", type=int, default=20_000, help="matching documents/s offered to one aggregation"
    )
    parser.add_argument("--aggs-streams", type=int, default=1000, help="aggregation streams on one Tailor")
    parser.add_argument("--page-rate", type=int, default=7000, help="matching documents/s sent to the page")
    parser.add_argument(
        "--phases",
        default="throughput,http,everyday,feed,beaters,routers,filter,sequential,large,streams,aggs,page,highlight,overload",
        help="which runs, comma-separated (all by default)",
    )
    parser.add_argument("--soak", default="60,300", help="seconds of overload at which memory is read")
    args = parser.parse_args()

    workdir = ROOT / ".estrom" / "bench"
    shutil.rmtree(workdir, ignore_errors=True)  # every run starts from an empty engine
    stack = Stack(workdir, ports=PORTS, watcher=secrets.token_urlsafe(24))
    # Queries registered count as listened to this long (every Beater alike): the everyday tail
    # waits it out, as stored queries registered long ago are.
    stack.env["ESTROM_ACTIVE_GRACE_SECONDS"] = str(tail.GRACE_SECONDS)
    try:
        stack.start_engine()
        stack.start_router()
        stack.start_beater()
        # One stream per connection: room for all of them, and the readiness probes.
        stack.start_tailor(ESTROM_MAX_CONNECTIONS=str(args.streams + 100))
        urls = {
            "estrom": stack.beater_url,  # the default configuration: batched, listened-to only
            "batched": stack.start_beater("beater-batched", port=PORTS.beater + 1, **ALL_QUERIES),
            "naive": stack.start_beater(
                "beater-naive", port=PORTS.beater + 2, module="bench.naive", **NAIVE, **ALL_QUERIES
            ),
        }
        if "large" in args.phases.split(","):
            # Every body parsed on the reactor's thread, as before ESTROM_OFF_REACTOR_BYTES.
            urls["on-reactor"] = stack.start_beater(
                "beater-on-reactor", port=PORTS.beater + 4, ESTROM_OFF_REACTOR_BYTES=str(2**40)
            )
        if {"beaters", "routers"} & set(args.phases.split(",")):
            urls["batched-2"] = stack.start_beater("beater-batched-2", port=PORTS.beater + 3, **ALL_QUERIES)
        task.react(lambda _: ensureDeferred(Bench(stack, urls, args).run()))
    finally:
        stack.down()


class Bench:
    def __init__(self, stack: Stack, urls: dict[str, str], args: argparse.Namespace):
        self.stack = stack
        self.urls = urls
        self.args = args
        self.http = http_client(persistent=True, per_host=256)
        self.results: dict = {"machine": {"cores": 2}, "throughput": {}, "settings": vars(args)}
        self.received = 0
        self.ids: dict[str, list[str]] = {}  # the registered queries' IDs, by index
        self.failures: dict[str, int] = {}  # requests that got no answer, by error

    async def run(self) -> None:
        self.session = await wamp_session(
            self.stack.router_url, {"ticket": {"authid": "watcher", "ticket": self.stack.watcher}}
        )
        # One subscriber for every topic (a trusted principal's: anonymous clients may only
        # subscribe to exact topics): counts what reaches subscribers.
        self.watching = await self.session.subscribe(
            self.count, api.TOPIC_PREFIX, SubscribeOptions(match="prefix")
        )
        self.results["memory"] = {"rest": self.memory()}
        counts = [int(n) for n in self.args.queries.split(",")]
        phases = set(self.args.phases.split(","))
        for count in counts:
            if "throughput" in phases or count == min(counts):  # the others use its queries
                await (
                    throughput.throughput(self, count)
                    if "throughput" in phases
                    else self.register(f"bench-{count}", count)
                )
        if {"http", "everyday"} & phases:
            # Readers as people tail, over Tailor: no prefix subscriber (it would receive every
            # query's own event, and switch the listened-to filter off).
            await self.watching.unsubscribe()
            if "http" in phases:
                self.results["http"] = {}
                for count in counts:
                    figures = await tail.http_streams(self, count)
                    self.results["http"][str(count)] = figures
                    print(f"bench: http streams, {count} queries: {json.dumps(figures)}", flush=True)
            if "everyday" in phases:
                self.results["everyday"] = await tail.everyday(self)
                print(f"bench: everyday tail: {json.dumps(self.results['everyday'])}", flush=True)
            self.watching = await self.session.subscribe(
                self.count, api.TOPIC_PREFIX, SubscribeOptions(match="prefix")
            )
        if "feed" in phases:
            self.results["feed"] = await feed.feed(self)
            print(f"bench: feed: {json.dumps(self.results['feed'])}", flush=True)
        if "beaters" in phases:
            await several.beaters(self, min(counts))
        if "routers" in phases:
            await several.routers(self, min(counts))
        if "filter" in phases:
            await throughput.filter_savings(self, max(counts))
        if "sequential" in phases:
            await sequential.sequential(self, f"bench-{min(counts)}")
        if "large" in phases:
            await large.large_bodies(self, f"bench-{min(counts)}")
        if "streams" in phases:
            await streams.streams(self)
        if "aggs" in phases:
            await aggs.aggregations(self)
        if "page" in phases:
            await page.phase(self)
        if "highlight" in phases:
            await highlight.highlight(self, min(counts))
        if "overload" in phases:
            await overload.soak(self, f"bench-{min(counts)}")
        report.report(self)

    def count(self, *hits: object) -> None:
        self.received += len(hits)

    async def register(self, index: str, count: int, highlight: bool = False) -> None:
        started = time.monotonic()
        limit = DeferredSemaphore(8)
        marked = [{"highlight": True}] if highlight else []
        registered = await DeferredList(
            [limit.run(self.session.call, api.REGISTER, index, f"user:u{i}", *marked) for i in range(count)],
            fireOnOneErrback=True,
        )
        self.ids[index] = [sid for _, sid in registered]
        print(f"bench: registered {count} queries in {time.monotonic() - started:.1f} s", flush=True)

    async def deliver_for_a_while(
        self,
        beater_url: str,
        index: str,
        count: int,
        delivered: Callable[[], int] | None,
        documents: Callable[[int], list[dict]] | None = None,
    ) -> float:
        """Documents/s sent (``documents(n)``: n of them; by default, each matching one of the
        ``count`` queries ``user:u<n>``), until their hits were all ``delivered`` (hits counted
        since the start; None: not counted). Keeps the mean batch Beater formed in
        ``self.mean_batch``, and how many were sent in ``self.last_sent``."""
        before = await percolations(self.stack.engine_url, index, self.http)
        _, sent, elapsed = await self.load(beater_url, index, count, documents=documents, delivered=delivered)
        self.mean_batch = sent / max(await percolations(self.stack.engine_url, index, self.http) - before, 1)
        self.last_sent = sent
        return sent / elapsed

    async def engine_alone(
        self,
        index: str,
        count: int,
        documents: Callable[[int], list[dict]] | None = None,
        ids: list[str] | None = None,
    ) -> float:
        """The engine's own percolation rate (documents/s) of the documents the last
        ``deliver_for_a_while`` sent, in its mean batch, for the queries ``ids`` (all: None)."""
        docs_per_s, _ = await self.engine_direct(index, count, max(1, round(self.mean_batch)), documents, ids)
        return docs_per_s

    async def load(
        self,
        beater_url: str | list[str],
        index: str,
        count: int,
        copies: int = 1,
        documents: Callable[[int], list[dict]] | None = None,
        delivered: Callable[[], int] | None = None,
    ) -> tuple[float, int, int]:
        """JSON batches from concurrent senders for a while (to one Beater, or to several in
        turn): delivered documents/s, documents sent, documents delivered (to each of ``copies``
        subscribers of every query). With ``delivered`` (what readers counted since the
        start), documents sent and the seconds until their hits were all delivered instead."""
        make = documents or partial(user_documents, count)
        urls = [
            f"{url}/api/v0.1/docs/{index}"
            for url in ([beater_url] if isinstance(beater_url, str) else beater_url)
        ]
        published = 0
        sent = 0
        turn = 0
        received_before = self.received
        started = time.monotonic()

        async def send():
            nonlocal published, sent, turn
            url, turn = urls[turn % len(urls)], turn + 1
            documents = make(self.args.batch_docs)
            try:
                response = await self.http.post(url, json=documents, timeout=120)
                answer = await response.json()
            except Exception as e:  # noqa: BLE001 - a design that drops connections under load
                self.failures[str(e)[:120]] = self.failures.get(str(e)[:120], 0) + 1
                return
            if response.code == 200:
                published += answer["published"]
                sent += len(documents)

        await self.for_a_while(self.args.senders, send)
        if delivered is not None:
            await until(lambda: delivered() >= published, 60)
            return 0.0, sent, time.monotonic() - started
        await until(lambda: self.received - received_before >= published * copies, 60)
        received = (self.received - received_before) // copies
        return received / (time.monotonic() - started), sent, received

    async def engine_direct(
        self,
        index: str,
        count: int,
        batch: int,
        documents: Callable[[int], list[dict]] | None = None,
        ids: list[str] | None = None,
    ) -> tuple[float, int]:
        """Percolate requests straight to the engine (2 at a time, like Beater): documents/s,
        and documents percolated (``documents``: as _load; ``ids``: only those queries)."""
        url = f"{self.stack.engine_url}/estrom-queries-{index}/_search"
        make = documents or partial(user_documents, count)
        done = 0

        async def call():
            nonlocal done
            query = {"percolate": {"field": "estrom_query", "documents": make(batch)}}
            if ids is not None:
                query = {"bool": {"filter": [query, {"terms": {"estrom_id": ids}}]}}
            body = {
                "query": query,
                "_source": False,
                "size": 1000,
                "sort": [{"estrom_id": "asc"}],
                "track_total_hits": False,
            }
            response = await self.http.post(url, json=body, timeout=60)
            await response.json()
            done += batch

        elapsed = await self.for_a_while(2, call)
        return done / elapsed, done

    async def repeated(
        self, urls: list[str], index: str, count: int, node: str = "router", copies: int = 1
    ) -> dict:
        """--repeats throughput runs through the Beaters at ``urls``: documents/s, CPU seconds of
        every part, and CPU per document of the Beaters, the router node ``node`` (and of its
        kinds of process), and the engine."""
        runs, delivered, cpu = [], 0, {}
        for _ in range(self.args.repeats):
            cpu_before = self.cpu()
            docs_per_s, _, received = await self.load(urls, index, count, copies)
            cpu = added(cpu, spent(cpu_before, self.cpu()))
            runs.append(docs_per_s)
            delivered += received
        beaters = sum(seconds for name, seconds in cpu.items() if name.startswith("beater"))
        return {
            "docs_per_s": statistics.median(runs),
            "runs": runs,
            "cpu_seconds": cpu,
            "cpu_ms_per_doc": {
                "beaters": 1000 * beaters / delivered,
                "router": 1000 * cpu[node] / delivered,
                **{
                    kind: 1000 * cpu.get(f"{node}/{kind}", 0.0) / delivered
                    for kind in ("router-workers", "proxy-workers")
                },
                "engine": 1000 * cpu["engine"] / delivered,
            },
        }

    async def for_a_while(self, workers: int, step: Callable[[], Awaitable[None]]) -> float:
        """Run ``step()`` over and over in ``workers`` loops for --seconds; the seconds it took."""
        started = time.monotonic()
        deadline = started + self.args.seconds

        async def loop():
            while time.monotonic() < deadline:
                await step()

        await DeferredList([ensureDeferred(loop()) for _ in range(workers)], fireOnOneErrback=True)
        return time.monotonic() - started

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part (its whole process group) and by the bench."""
        groups = {process.pid: name for name, process in self.stack.processes.items()}
        used = {name: 0.0 for name in groups.values()}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                group = groups.get(int(fields[2]))  # pgrp
                if group is not None:
                    seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                    used[group] += seconds
                    if group.startswith("router"):  # and by the node's kind of process
                        kind = f"{group}/{crossbar_process(entry)}"
                        used[kind] = used.get(kind, 0.0) + seconds
        times = os.times()
        used["bench"] = times.user + times.system
        return used

    def memory(self) -> dict[str, float]:
        """Resident memory (MiB) of Beater and Tailor."""
        return {name: mib(rss(self.stack.processes[name].pid)) for name in ("beater", "tailor")}


if __name__ == "__main__":
    main()
