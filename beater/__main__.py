"""``python -m beater``: run Beater until SIGINT/SIGTERM."""

from __future__ import annotations

import sys
from functools import partial

from autobahn.twisted.component import run
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from beater.engine import Engine, engine_answers
from beater.ingest import IngestRoot, IngestSite
from beater.interest import Interest
from beater.percolator import Percolator
from beater.service import Beater
from beater.settings import BeaterSettings
from beater.store import Store
from estrom.health import HEALTH_PATHS, add_health
from estrom.http import SiteLimits, token_file
from estrom.logs import start_logging
from estrom.metrics import MetricsResource
from estrom.settings import describe, load
from estrom.wamp import component

log = Logger()


def main(argv: list[str] | None = None) -> None:
    settings = load(BeaterSettings, argv, prog="beater")
    try:
        start_logging(settings.log_format)
    except ValueError as e:
        sys.exit(f"beater: {e}")
    log.info("Beater settings:\n{settings}", settings=describe(settings))
    if not settings.secret:
        sys.exit("beater: ESTROM_BEATER_SECRET is not set; the router admits Beater only with it")
    try:
        limits = SiteLimits.parse(
            settings.allowed_hosts, settings.request_deadline_seconds, settings.max_connections
        )
        tokens = token_file(settings.tokens, settings.host, "Beater")
    except ValueError as e:
        sys.exit(f"beater: {e}")

    engine = Engine(
        settings.elasticsearch_url,
        settings.engine_timeout_seconds,
        # A kept-alive connection for everything that may be in flight at once (and the
        # sweep's), so no request waits to open one; twice the percolations with the store.
        connections=settings.percolations_in_flight * (1 + settings.store)
        + settings.engine_calls_in_flight
        + 1,
    )
    beater = Beater(
        Percolator(
            engine,
            settings.percolate_page_size,
            settings.percolator_replicas,
            max_queries=settings.max_queries_per_index,
            listened_window=settings.active_grace_seconds,
        ),
        settings.batching(),
        Interest(settings.active_grace_seconds) if settings.percolate_only_active else None,
        limits=settings.query_limits(),
        index_patterns=settings.indexes(),
        document_limits=settings.document_limits(),
        calls_in_flight=settings.engine_calls_in_flight,
        calls_queued=settings.engine_calls_queued,
        store=Store(engine, settings.max_backlog) if settings.store else None,
        tokens=tokens,
    )
    wamp = component(
        settings.router_url,
        settings.realm,
        {"ticket": {"authid": "beater", "ticket": settings.secret}},
        settings.router_heartbeat_seconds,
    )
    sweep = LoopingCall(lambda: Deferred.fromCoroutine(beater.sweep(settings.query_retention_days * 86400)))
    sweep.start(settings.query_sweep_seconds, now=False).addErrback(
        lambda failure: log.failure("the sweep of stored queries stopped", failure)
    )
    wamp.on("join", beater.on_join)
    wamp.on("leave", beater.on_leave)

    root = IngestRoot(beater)
    add_health(root, {"engine": partial(engine_answers, engine), "router": beater.router_joined})
    # With the router's own counts (its meta API), asked when scraped.
    root.putChild(b"metrics", MetricsResource(beater.metrics, beater.count_router))
    site = IngestSite(root, settings.max_body_bytes)
    # IngestSite is a GuardedSite (estrom.http): Host check, request deadline, connection cap.
    site.limits = limits
    site.access_log = settings.access_log
    site.tokens = tokens
    site.open_paths = HEALTH_PATHS
    site.metrics = beater.metrics
    reactor.listenTCP(settings.port, site, interface=settings.host)
    log.info(
        "Beater ingest: POST documents to http://{host}:{port}/api/v0.1/docs/<index>, "
        "or _bulk bodies to http://{host}:{port}/_bulk",
        host=settings.host,
        port=settings.port,
    )
    run([wamp], log_level="info")


if __name__ == "__main__":
    main()
