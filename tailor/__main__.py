"""``python -m tailor``: run Tailor until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from autobahn.twisted.component import run
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from estrom.health import HEALTH_PATHS, add_health
from estrom.http import GuardedSite, SiteLimits, api_root, token_file
from estrom.logs import start_logging
from estrom.metrics import MetricsResource, TailorMetrics
from estrom.settings import describe, load
from estrom.wamp import component
from tailor.request import DocsResource
from tailor.service import Tailor
from tailor.settings import TailorSettings

log = Logger()


def main(argv: list[str] | None = None) -> None:
    settings = load(TailorSettings, argv, prog="tailor")
    try:
        start_logging(settings.log_format)
    except ValueError as e:
        sys.exit(f"tailor: {e}")
    log.info("Tailor settings:\n{settings}", settings=describe(settings))
    try:
        limits = SiteLimits.parse(
            settings.allowed_hosts, settings.request_deadline_seconds, settings.max_connections
        )
        tokens = token_file(settings.tokens, settings.host, "Tailor")
    except ValueError as e:
        sys.exit(f"tailor: {e}")
    me = tokens.check(settings.token) if tokens is not None else None
    if tokens is not None and me is None:
        sys.exit(
            "tailor: with ESTROM_TOKENS, ESTROM_TAILOR_TOKEN must be a token of that file (the router admits Tailor with it)"
        )

    tailor = Tailor(
        settings.keepalive_seconds,
        settings.max_pending_hits,
        settings.max_pending_bytes,
        settings.max_behind_seconds,
    )
    # With tokens, Tailor is a reader of its own at the router, and checks its clients' tokens itself.
    authentication = {"ticket": {"authid": me.name, "ticket": settings.token}} if me else None
    wamp = component(
        settings.router_url, settings.realm, authentication, heartbeat=settings.router_heartbeat_seconds
    )
    if tokens is not None:
        tokens.on_change.append(tailor.revoke)
    wamp.on("join", tailor.on_join)
    wamp.on("leave", tailor.on_leave)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(tailor.shutdown()))

    root = api_root(DocsResource(tailor))
    add_health(root, {"router": tailor.readiness})
    metrics = TailorMetrics(tailor)
    root.putChild(b"metrics", MetricsResource(metrics))
    site = GuardedSite(root, limits=limits, access_log=settings.access_log, tokens=tokens)
    site.open_paths = HEALTH_PATHS
    site.metrics = metrics
    reactor.listenTCP(settings.port, site, interface=settings.host)
    log.info(
        "Tailor: curl -N 'http://{host}:{port}/api/v0.1/docs?i=<index>&q=<query>'",
        host=settings.host,
        port=settings.port,
    )
    run([wamp], log_level="info")


if __name__ == "__main__":
    main()
