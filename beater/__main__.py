"""``python -m beater``: run Beater until SIGINT/SIGTERM."""

from __future__ import annotations

import sys
from functools import partial

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from beater.compat import Compat
from beater.engine import Engine, engine_answers
from beater.indexes import percolator_index
from beater.ingest import IngestRoot, IngestSite
from beater.interest import Interest
from beater.percolator import Percolator
from beater.presearch import ABSENT_SECONDS, Presearcher
from beater.service import Beater
from beater.settings import BeaterSettings
from beater.store import Store
from estrom.loops import Repeating
from estrom.metrics import MetricsResource
from estrom.service import serve, start
from estrom.wamp import component, whole_join


def main(argv: list[str] | None = None) -> None:
    settings, limits, tokens = start(BeaterSettings, argv, "Beater")
    if not settings.secret:
        sys.exit("beater: ESTROM_BEATER_SECRET is not set; the router admits Beater only with it")

    engine = Engine(
        settings.elasticsearch_url,
        settings.engine_timeout_seconds,
        # A kept-alive connection for everything that may be in flight at once (and the
        # sweep's), so no request waits to open one; twice the percolations with the store.
        connections=settings.percolations_in_flight * (1 + settings.store)
        + settings.engine_calls_in_flight
        + 1,
    )
    percolator = Percolator(
        engine,
        settings.percolate_page_size,
        settings.percolator_replicas,
        max_queries=settings.max_queries_per_index,
        max_indexes=settings.max_percolator_indexes,
        listened_window=settings.active_grace_seconds,
    )
    presearch = settings.presearch and settings.percolate_only_active
    beater = Beater(
        percolator,
        settings.batching(),
        Interest(settings.active_grace_seconds) if settings.percolate_only_active else None,
        limits=settings.query_limits(),
        index_patterns=settings.indexes(),
        document_limits=settings.document_limits(),
        calls_in_flight=settings.engine_calls_in_flight,
        calls_queued=settings.engine_calls_queued,
        store=Store(engine, settings.max_backlog) if settings.store else None,
        tokens=tokens,
        presearch=(
            # A query registered after it was found absent is read again within the window.
            Presearcher(
                engine,
                percolator_index,
                absent_seconds=min(ABSENT_SECONDS, settings.active_grace_seconds / 2),
            )
            if presearch
            else None
        ),
    )
    wamp = component(
        settings.router_url,
        settings.realm,
        {"ticket": {"authid": "beater", "ticket": settings.secret}},
        settings.router_heartbeat_seconds,
    )
    # The sweep's lease outlasts three sweeps (at least 10 s): a Beater that dies without giving
    # it back is succeeded by another within that.
    lease = max(3 * settings.query_sweep_seconds, settings.query_sweep_seconds + 10)
    sweep = Repeating(
        "sweep",
        lambda: beater.sweep(settings.query_retention_days * 86400, lease),
        settings.query_sweep_seconds,
    )
    sweep.on_failure.append(beater.metrics.failed)
    sweep.start()
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromCoroutine(beater.stop_sweeping())
    )
    wamp.on("join", whole_join(beater.on_join, beater.metrics.failed))
    wamp.on("leave", beater.on_leave)

    serve(
        settings,
        IngestSite(
            IngestRoot(beater, Compat(settings.compat_version), settings.otlp_index),
            settings.max_body_bytes,
            settings.max_bytes_in_flight,
            settings.off_reactor_bytes,
        ),
        (limits, tokens),
        {"engine": partial(engine_answers, engine), "router": beater.router_joined},
        # With the router's own counts (its meta API), asked when scraped.
        MetricsResource(beater.metrics, beater.count_router),
        wamp,
        "Beater ingest: POST documents to http://{host}:{port}/api/v0.1/docs/<index>, "
        "or _bulk bodies to http://{host}:{port}/_bulk",
    )


if __name__ == "__main__":
    main()
