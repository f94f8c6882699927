"""What Beater and Tailor count, for Prometheus: ``GET /metrics`` (prometheus_client's text format).

Each service has a registry of its own (not prometheus_client's global one), so several in one
process (the unit tests) do not mix. Index names become label values only for the first
``MAX_INDEX_LABELS`` indexes that take documents; the rest are counted under ``_other``: a
sender that makes up index names cannot make the metrics grow without bound.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.defer import Deferred
from twisted.web.server import Request

from estrom.coalesce import Coalesce
from estrom.http import JsonResource, answer_later, answered_or_gone, error_answer, principal_of

MAX_INDEX_LABELS = 100
REFRESH_EVERY = 1.0  # seconds between two askings of the router's counts
OTHER_INDEXES = "_other"


class IndexLabels:
    """Index names as label values: the first ``limit`` names of indexes that took documents
    as they are, then OTHER_INDEXES. Refusals count under a name only once it took some: a name
    made up for a refusal (an invalid one, one the sender may not use) never becomes a label."""

    def __init__(self, limit: int = MAX_INDEX_LABELS):
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, index: str) -> str:
        """The label of an index that took documents."""
        if index in self._seen:
            return index
        if len(self._seen) < self.limit:
            self._seen.add(index)
            return index
        return OTHER_INDEXES

    def known(self, index: str) -> str:
        """The label of ``index`` if it has one, else OTHER_INDEXES."""
        return index if index in self._seen else OTHER_INDEXES


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.index = IndexLabels()
        self.responses = Counter(
            "estrom_http_responses", "HTTP responses, by status", ["status"], registry=self.registry
        )
        self.failures = Counter(
            "estrom_failures",
            "Failures that were logged and survived, by what failed: a loop's round (sweep, "
            "token_file), a join to the router (join: the session left and joins again), an item "
            "of estrom's own _bulk requests the engine refused (bulk_item)",
            ["what"],
            registry=self.registry,
        )

    def answered(self, status: int) -> None:
        self.responses.labels(str(status)).inc()

    def failed(self, what: str, count: int = 1) -> None:
        self.failures.labels(what).inc(count)


class BeaterMetrics(_Metrics):
    def __init__(self) -> None:
        super().__init__()
        # Beater's own, in the registry /metrics reads.
        counter, gauge, histogram = (
            partial(kind, registry=self.registry) for kind in (Counter, Gauge, Histogram)
        )
        self.accepted = counter(
            "estrom_documents_accepted", "Documents percolated and published (answered 2xx)", ["index"]
        )
        self.rejected = counter(
            "estrom_documents_rejected",
            "Documents refused, by the status they got (403, 422, 400 for a _bulk item; 429 and 503: retry)",
            ["index", "status"],
        )
        self.published = counter(
            "estrom_hits_published", "Hits published to the router (one per matching query)", ["index"]
        )
        self.stages = histogram(
            "estrom_stage_seconds",
            "Where a request's time goes: parse (its body), pipeline (submitted to delivered: waiting, "
            "percolating, publishing), percolate and publish (of its batch: to the router's acknowledgement), "
            "answer (the response written)",
            ["stage"],
            buckets=(
                0.00005,
                0.0001,
                0.0002,
                0.0003,
                0.0005,
                0.00075,
                0.001,
                0.0015,
                0.002,
                0.003,
                0.005,
                0.0075,
                0.01,
                0.025,
                0.05,
                0.1,
                0.5,
                1,
                5,
            ),
        )
        self.not_percolated = counter(
            "estrom_documents_not_percolated",
            "Documents no listened-to query could match (the presearcher): not sent to the engine",
        )
        self.events = counter(
            "estrom_events_published",
            "Events published to the router: to a query's topic, or to the feed (one per batch for Tailors)",
            ["to"],
        )
        self.percolation = histogram(
            "estrom_percolation_seconds",
            "Time to percolate (and with the store, store) one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch = histogram(
            "estrom_batch_documents",
            "Documents in one percolation",
            buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 5000),
        )
        self.queue_documents = gauge(
            "estrom_queue_documents", "Documents waiting for the engine (past ESTROM_QUEUE_MAX_DOCS: 429)"
        )
        self.queue_bytes = gauge(
            "estrom_queue_bytes", "Request bytes waiting for the engine (past ESTROM_QUEUE_MAX_BYTES: 429)"
        )
        self.router_joined = gauge("estrom_router_joined", "1 while joined to the router")
        self.router_sessions = gauge(
            "estrom_router_sessions", "Sessions joined to the router's realm (its meta API, when scraped)"
        )
        self.router_subscriptions = gauge(
            "estrom_router_subscriptions", "Topics subscribed to at the router (its meta API)"
        )

    def watch_queue(self, documents: Callable[[], float], size: Callable[[], float]) -> None:
        self.queue_documents.set_function(documents)
        self.queue_bytes.set_function(size)

    def took(self, index: str, count: int) -> None:
        if count:
            self.accepted.labels(self.index(index)).inc(count)

    def refused(self, index: str, count: int, status: int) -> None:
        if count:
            self.rejected.labels(self.index.known(index), str(status)).inc(count)

    def delivered(self, index: str, documents: int, hits: int, seconds: float) -> None:
        self.batch.observe(documents)
        self.percolation.observe(seconds)
        if hits:
            self.published.labels(self.index(index)).inc(hits)


class TailorMetrics(_Metrics):
    """Tailor's: what ``tailor`` (a tailor.service.Tailor) counts, read when scraped."""

    def __init__(self, tailor: Any) -> None:
        super().__init__()
        self.registry.register(_TailorCollector(tailor))


class _TailorCollector:
    def __init__(self, tailor: Any):
        self.tailor = tailor

    def collect(self):
        t = self.tailor
        streams = t.streams
        yield GaugeMetricFamily("estrom_streams_open", "Streams open now", value=len(streams))
        yield CounterMetricFamily("estrom_streams", "Streams opened", value=t.opened)
        yield CounterMetricFamily(
            "estrom_hits_sent",
            "Hits written to streams (backlog included)",
            value=t.sent_by_ended + sum(stream.sent for stream in streams),
        )
        yield CounterMetricFamily(
            "estrom_streams_dropped",
            "Streams ended because their client read slower than hits arrived",
            value=t.dropped,
        )
        yield CounterMetricFamily(
            "estrom_hits_dropped",
            "Hits that dropped streams still held for their clients",
            value=t.hits_dropped,
        )
        yield CounterMetricFamily(
            "estrom_resends_skipped",
            "Copies of a document its sender named, sent again, not given to a stream that had it",
            value=t.resends.dropped,
        )
        yield GaugeMetricFamily(
            "estrom_resends_remembered",
            "Named document IDs Tailor remembers to know their resends",
            value=len(t.resends),
        )


class MetricsResource(JsonResource):
    """``GET /metrics``: the registry in Prometheus's text format, for a token that may read
    every index (its counts name indexes), or anyone without a token file."""

    isLeaf = True
    allowedMethods = (b"GET",)

    def __init__(
        self,
        metrics: _Metrics,
        refresh: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.metrics = metrics
        self.refresh = refresh
        self.clock = clock
        self._refreshing = Coalesce()
        self._refreshed = float("-inf")

    def render_GET(self, request: Request) -> bytes | int:
        reader = principal_of(request)
        if not reader.reads_everything:
            message = f"the token {reader.name!r} may not read the metrics: they need one that reads '*'"
            return error_answer(request, 403, message)
        return answer_later(request, self._answer(request), "metrics")

    async def _answer(self, request: Request) -> None:
        # What is asked of others (the router's counts) is asked when scraped, at most once a
        # second however many scrape.
        if self.refresh is not None and self.clock() - self._refreshed >= REFRESH_EVERY:
            await self._refreshing.run(None, lambda: Deferred.fromCoroutine(self._refresh()))
        if answered_or_gone(request):
            return
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.write(generate_latest(self.metrics.registry))
        request.finish()

    async def _refresh(self) -> None:
        await self.refresh()
        self._refreshed = self.clock()
