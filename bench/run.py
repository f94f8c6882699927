"""The benchmark: `make bench` (or `python -m bench.run`).

Starts a real OpenSearch node and the real stack on ports of their own, then measures, each a
median of repeated runs:
  1. ingest-to-delivery throughput with 100, 1,000 and 10,000 registered queries, for the naive
     design (one percolate request per document) and estrom's batched pipeline;
  2. the engine's own percolate throughput for the same documents, queries and batch sizes;
  3. end-to-end latency (POST sent -> hit read by an HTTP stream client) at a fixed rate;
  4. resident memory of Beater and Tailor at rest, under load, and under sustained overload
     with slow clients;
  and what percolating only listened-to queries saves.
Prints a table and writes the figures as JSON (bench/results/<time>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import time
import urllib.parse
from pathlib import Path

import treq
from autobahn.twisted.component import Component
from autobahn.wamp.types import SubscribeOptions
from treq.client import HTTPClient
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, ensureDeferred
from twisted.web.client import Agent, HTTPConnectionPool

from estrom import api
from estrom.stack import ROOT, Ports, Stack

PORTS = Ports(engine=29200, router=28080, beater=28070, tailor=28090)
# The seed's design: every document percolated on its own, on arrival.
NAIVE = {
    "ESTROM_PERCOLATE_ONE_BY_ONE": "true",
    "ESTROM_BATCH_MAX_DOCS": "1",
    "ESTROM_BATCH_MAX_WAIT_MS": "0",
    "ESTROM_PERCOLATIONS_IN_FLIGHT": "64",
}
ALL_QUERIES = {"ESTROM_PERCOLATE_ONLY_ACTIVE": "false"}
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", default="100,1000,10000", help="registered query counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is kept)")
    parser.add_argument("--senders", type=int, default=32, help="concurrent senders")
    parser.add_argument(
        "--batch-docs",
        type=int,
        default=100,
        help="documents per request (Logstash json_batch sends up to 125)",
    )
    parser.add_argument("--rate", type=int, default=500, help="documents/s offered in the latency run")
    parser.add_argument("--clients", type=int, default=100, help="HTTP stream clients in the latency run")
    parser.add_argument("--soak", default="60,300", help="seconds of overload at which memory is read")
    args = parser.parse_args()

    workdir = ROOT / ".estrom" / "bench"
    shutil.rmtree(workdir, ignore_errors=True)  # every run starts from an empty engine
    stack = Stack(workdir, ports=PORTS, watcher=secrets.token_urlsafe(24))
    try:
        stack.start_engine()
        stack.start_router()
        stack.start_beater()
        stack.start_tailor()
        urls = {
            "estrom": stack.beater_url,  # the default configuration: batched, listened-to only
            "batched": stack.start_beater("beater-batched", port=PORTS.beater + 1, **ALL_QUERIES),
            "naive": stack.start_beater("beater-naive", port=PORTS.beater + 2, **NAIVE, **ALL_QUERIES),
        }
        task.react(lambda _: ensureDeferred(Bench(stack, urls, args).run()))
    finally:
        stack.down()


class Bench:
    def __init__(self, stack: Stack, urls: dict[str, str], args: argparse.Namespace):
        self.stack = stack
        self.urls = urls
        self.args = args
        pool = HTTPConnectionPool(reactor)
        pool.maxPersistentPerHost = 256
        self.http = HTTPClient(Agent(reactor, pool=pool))
        self.results: dict = {"machine": {"cores": 2}, "throughput": {}, "settings": vars(args)}
        self.received = 0

    async def run(self) -> None:
        self.session = await _wamp(
            self.stack.router_url, {"ticket": {"authid": "watcher", "ticket": self.stack.watcher}}
        )
        # One subscriber for every topic (a trusted principal's: anonymous clients may only
        # subscribe to exact topics): counts what reaches subscribers.
        await self.session.subscribe(self._count, api.TOPIC_PREFIX, SubscribeOptions(match="prefix"))
        self.results["memory"] = {"rest": self._memory()}
        for count in [int(n) for n in self.args.queries.split(",")]:
            await self._throughput(count)
        await self._filter_savings(max(int(n) for n in self.args.queries.split(",")))
        await self._latency_and_memory()
        self._report()

    def _count(self, *hits) -> None:
        self.received += len(hits)

    # --- 1 and 2: throughput ------------------------------------------------------------------

    async def _register(self, index: str, count: int) -> None:
        started = time.monotonic()
        limit = DeferredSemaphore(8)
        await DeferredList(
            [limit.run(self.session.call, api.REGISTER, index, f"user:u{i}") for i in range(count)],
            fireOnOneErrback=True,
        )
        print(f"bench: registered {count} queries in {time.monotonic() - started:.1f} s", flush=True)

    async def _throughput(self, count: int) -> None:
        index = f"bench-{count}"
        await self._register(index, count)
        figures = {}
        for design in ("naive", "batched"):
            runs = []
            cpu_before = self._cpu()
            for _ in range(self.args.repeats):
                before = await self._percolations(index)
                docs_per_s, sent = await self._load(self.urls[design], index, count)
                percolations = await self._percolations(index) - before
                runs.append((docs_per_s, sent / max(percolations, 1)))
            cpu = {name: round(seconds - cpu_before[name], 1) for name, seconds in self._cpu().items()}
            figures[design] = {
                "docs_per_s": statistics.median(r[0] for r in runs),
                "mean_batch": statistics.median(r[1] for r in runs),
                "runs": [r[0] for r in runs],
                "cpu_seconds": cpu,
            }
        batch = max(1, round(figures["batched"]["mean_batch"]))
        engine = [await self._engine_direct(index, count, batch) for _ in range(self.args.repeats)]
        figures["engine"] = {"docs_per_s": statistics.median(engine), "batch": batch, "runs": engine}
        figures["batched_over_naive"] = figures["batched"]["docs_per_s"] / figures["naive"]["docs_per_s"]
        figures["estrom_over_engine"] = figures["batched"]["docs_per_s"] / figures["engine"]["docs_per_s"]
        self.results["throughput"][str(count)] = figures
        print(f"bench: {count} queries: {json.dumps(figures)}", flush=True)

    async def _load(self, beater_url: str, index: str, count: int) -> tuple[float, int]:
        """JSON batches from concurrent senders for a while; delivered documents/s."""
        url = f"{beater_url}/api/v0.1/docs/{index}"
        published = 0
        sent = 0
        received_before = self.received
        started = time.monotonic()

        async def send():
            nonlocal published, sent
            documents = [
                {"user": f"u{random.randrange(count)}", "msg": "GET /api 200"}
                for _ in range(self.args.batch_docs)
            ]
            response = await self.http.post(url, json=documents)
            answer = await response.json()
            if response.code == 200:
                published += answer["published"]
                sent += len(documents)

        await self._for_a_while(self.args.senders, send)
        await _until(lambda: self.received - received_before >= published, 60)
        return (self.received - received_before) / (time.monotonic() - started), sent

    async def _percolations(self, index: str) -> int:
        response = await self.http.get(f"{self.stack.engine_url}/estrom-queries-{index}/_stats/search")
        return (await response.json())["_all"]["primaries"]["search"]["query_total"]

    async def _engine_direct(self, index: str, count: int, batch: int) -> float:
        """Percolate requests straight to the engine (2 at a time, like Beater): documents/s."""
        url = f"{self.stack.engine_url}/estrom-queries-{index}/_search"
        done = 0

        async def call():
            nonlocal done
            documents = [{"user": f"u{random.randrange(count)}", "msg": "GET /api 200"} for _ in range(batch)]
            body = {
                "query": {"percolate": {"field": "estrom_query", "documents": documents}},
                "_source": False,
                "size": 1000,
                "sort": [{"estrom_id": "asc"}],
                "track_total_hits": False,
            }
            response = await self.http.post(url, json=body)
            await response.json()
            done += batch

        elapsed = await self._for_a_while(2, call)
        return done / elapsed

    async def _filter_savings(self, count: int) -> None:
        """10,000 stored queries, 100 with a subscriber: percolating only those vs all."""
        index = f"bench-{count}"
        # The prefix subscription would switch the filter off: leave it for this run.
        self.session.leave()
        self.session = await _wamp(self.stack.router_url)
        listened = 100
        for i in range(listened):
            sid = await self.session.call(api.REGISTER, index, f"user:u{i}")
            await self.session.subscribe(self._count, api.topic(sid))
        figures = {}
        for design, url in (("only_listened", self.urls["estrom"]), ("all", self.urls["batched"])):
            runs = [await self._accepted_per_s(url, index, count) for _ in range(self.args.repeats)]
            figures[design] = {"docs_per_s": statistics.median(runs), "runs": runs}
        figures["ratio"] = figures["only_listened"]["docs_per_s"] / figures["all"]["docs_per_s"]
        self.results["active_filter"] = {"queries": count, "listened": listened, **figures}
        print(f"bench: active filter: {json.dumps(figures)}", flush=True)

    async def _accepted_per_s(self, beater_url: str, index: str, count: int) -> float:
        """Documents/s Beater accepts (percolated and published) from JSON batches of 100."""
        url = f"{beater_url}/api/v0.1/docs/{index}"
        accepted = 0

        async def send():
            nonlocal accepted
            response = await self.http.post(
                url, json=[{"user": f"u{random.randrange(count)}"} for _ in range(100)]
            )
            if response.code == 200:
                accepted += (await response.json())["accepted"]
            else:
                await response.content()

        elapsed = await self._for_a_while(4, send)
        return accepted / elapsed

    async def _for_a_while(self, workers: int, step) -> float:
        """Run ``step()`` over and over in ``workers`` loops for --seconds; the seconds it took."""
        started = time.monotonic()
        deadline = started + self.args.seconds

        async def loop():
            while time.monotonic() < deadline:
                await step()

        await DeferredList([ensureDeferred(loop()) for _ in range(workers)], fireOnOneErrback=True)
        return time.monotonic() - started

    # --- 3 and 4: latency and memory ---------------------------------------------------------

    async def _latency_and_memory(self) -> None:
        index = "bench-1000"
        clients = self.args.clients
        latencies: list[float] = []
        streams = [
            await _Stream.open(self.stack.tailor_url, index, f"user:u{i}", latencies) for i in range(clients)
        ]
        url = f"{self.urls['estrom']}/api/v0.1/docs/{index}"
        sent = 0
        started = time.monotonic()

        async def tick():
            # As many documents as the rate asks for by now: a late tick catches up.
            nonlocal sent
            due = int(self.args.rate * (time.monotonic() - started)) - sent
            if due <= 0:
                return
            documents = [
                {"user": f"u{random.randrange(clients)}", "sent_at": time.time()} for _ in range(due)
            ]
            sent += due
            await self.http.post(url, json=documents)

        loop = task.LoopingCall(lambda: ensureDeferred(tick()))
        loop.start(0.01)
        await task.deferLater(reactor, 5, lambda: None)
        self.results["memory"]["load"] = self._memory()
        await task.deferLater(reactor, 5, lambda: None)
        loop.stop()
        await _until(lambda: len(latencies) >= sent, 20)
        for stream in streams:
            stream.close()
        quantiles = statistics.quantiles(latencies, n=100)
        self.results["latency_ms"] = {
            "offered_docs_per_s": self.args.rate,
            "queries": 1000,
            "clients": clients,
            "p50": quantiles[49] * 1000,
            "p99": quantiles[98] * 1000,
            "received": len(latencies),
            "sent": sent,
        }
        print(f"bench: latency: {json.dumps(self.results['latency_ms'])}", flush=True)
        await self._soak(index)

    async def _soak(self, index: str) -> None:
        """Sustained overload (more than Beater takes) with slow stream clients."""
        slow = [_slow_client(self.stack.ports.tailor, index, f"user:u{i}") for i in range(self.args.clients)]
        url = f"{self.urls['estrom']}/api/v0.1/docs/{index}"
        marks = sorted(float(s) for s in self.args.soak.split(","))
        stopping = False
        refused = 0

        # More documents in flight than Beater lets wait (64 x 1,000 > 50,000): some are refused.
        bodies = [
            json.dumps(
                [{"user": f"u{random.randrange(self.args.clients)}", "blob": "x" * 200} for _ in range(1000)]
            ).encode()
            for _ in range(8)
        ]

        async def sender(n: int):
            nonlocal refused
            while not stopping:
                response = await self.http.post(
                    url, data=bodies[n % len(bodies)], headers={"Content-Type": "application/json"}
                )
                refused += response.code == 429
                await response.content()

        senders = [ensureDeferred(sender(n)) for n in range(64)]
        started = time.monotonic()
        soak = {}
        for mark in marks:
            await task.deferLater(reactor, max(0, started + mark - time.monotonic()), lambda: None)
            soak[f"{mark:g}s"] = self._memory()
            print(f"bench: overload {mark:g} s: {soak[f'{mark:g}s']}", flush=True)
        stopping = True
        await DeferredList(senders)
        for client in slow:
            client.close()
        first, last = soak[f"{marks[0]:g}s"], soak[f"{marks[-1]:g}s"]
        self.results["memory"]["overload"] = soak
        self.results["memory"]["overload_growth"] = {name: last[name] / first[name] - 1 for name in first}
        self.results["memory"]["refused_429"] = refused

    def _cpu(self) -> dict[str, float]:
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
                    used[group] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        times = os.times()
        used["bench"] = times.user + times.system
        return used

    def _memory(self) -> dict[str, float]:
        """Resident memory (MiB) of Beater and Tailor."""
        return {name: _rss_mib(self.stack.processes[name].pid) for name in ("beater", "tailor")}

    def _report(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / time.strftime("%Y%m%d-%H%M%S.json")
        path.write_text(json.dumps(self.results, indent=2))
        print("\nThroughput (documents/s delivered; medians)")
        print(
            f"{'queries':>8} {'naive':>9} {'batched':>9} {'engine':>9} {'batch':>6} {'b/a':>6} {'estrom/engine':>14}"
        )
        for count, f in self.results["throughput"].items():
            print(
                f"{count:>8} {f['naive']['docs_per_s']:>9.0f} {f['batched']['docs_per_s']:>9.0f} "
                f"{f['engine']['docs_per_s']:>9.0f} {f['engine']['batch']:>6} "
                f"{f['batched_over_naive']:>6.1f} {f['estrom_over_engine']:>14.2f}"
            )
        a = self.results["active_filter"]
        print(
            f"\nOnly listened-to queries ({a['listened']} of {a['queries']}): {a['only_listened']['docs_per_s']:.0f} "
            f"docs/s vs all {a['all']['docs_per_s']:.0f} docs/s ({a['ratio']:.1f}x)"
        )
        lat = self.results["latency_ms"]
        print(
            f"\nLatency at {lat['offered_docs_per_s']} docs/s, {lat['queries']} queries, {lat['clients']} clients: "
            f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms ({lat['received']}/{lat['sent']} received)"
        )
        print("\nResident memory (MiB):")
        for phase, figures in self.results["memory"].items():
            print(f"  {phase}: {figures}")
        print("\nCPU seconds by part during the runs (where the time goes):")
        for count, f in self.results["throughput"].items():
            for design in ("naive", "batched"):
                print(f"  {count:>6} queries, {design:>7}: {f[design]['cpu_seconds']}")
        print(f"\nWritten to {path}")


class _Stream:
    """An HTTP stream client that records each hit's latency from its "sent_at"."""

    def __init__(self, latencies: list[float]):
        import ijson

        self.latencies = latencies
        self.parser = ijson.items_coro(self, "hits.item")
        self.transport = None

    def send(self, hit: dict) -> None:  # ijson's target
        self.latencies.append(time.time() - float(hit["_source"]["sent_at"]))  # ijson gives Decimal

    @classmethod
    async def open(cls, tailor_url: str, index: str, query: str, latencies: list[float]) -> _Stream:
        stream = cls(latencies)
        params = urllib.parse.urlencode({"i": index, "q": query})
        response = await treq.get(f"{tailor_url}/api/v0.1/docs?{params}", unbuffered=True)
        head: Deferred = Deferred()
        stream.head = head
        response.deliverBody(_Feed(stream))
        await head
        return stream

    def close(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


class _Feed:
    def __init__(self, stream: _Stream):
        self.stream = stream

    def makeConnection(self, transport) -> None:
        self.stream.transport = transport

    def dataReceived(self, data: bytes) -> None:
        self.stream.parser.send(data)
        if not self.stream.head.called:
            self.stream.head.callback(None)

    def connectionLost(self, reason) -> None:
        pass


def _slow_client(port: int, index: str, query: str) -> socket.socket:
    """A client that asks for a stream and never reads it."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    params = urllib.parse.urlencode({"i": index, "q": query})
    client.sendall(f"GET /api/v0.1/docs?{params} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return client


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def _wamp(url: str, authentication: dict | None = None):
    component = Component(
        transports=[{"type": "websocket", "url": url, "max_retries": 0}],
        realm="estrom",
        authentication=authentication or {},
    )
    joined: Deferred = Deferred()
    component.on("join", lambda session, details: joined.callback(session))
    component.start(reactor)
    return await joined


async def _until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await task.deferLater(reactor, 0.05, lambda: None)


if __name__ == "__main__":
    main()
