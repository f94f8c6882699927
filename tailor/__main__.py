"""``python -m tailor``: run Tailor until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

import txaio
from autobahn.twisted.component import run
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from estrom.http import GuardedSite, SiteLimits, api_root
from estrom.settings import describe, load
from estrom.wamp import component
from tailor.settings import TailorSettings
from tailor.stream import DocsResource, Tailor

log = Logger()


def main(argv: list[str] | None = None) -> None:
    settings = load(TailorSettings, argv, prog="tailor")
    txaio.start_logging(level="info")
    log.info("Tailor settings:\n{settings}", settings=describe(settings))
    try:
        limits = SiteLimits.parse(
            settings.allowed_hosts, settings.request_deadline_seconds, settings.max_connections
        )
    except ValueError as e:
        sys.exit(f"tailor: {e}")

    tailor = Tailor(
        settings.keepalive_seconds,
        settings.max_pending_hits,
        settings.max_pending_bytes,
        settings.max_behind_seconds,
    )
    wamp = component(settings.router_url, settings.realm, heartbeat=settings.router_heartbeat_seconds)
    wamp.on("join", tailor.on_join)
    wamp.on("leave", tailor.on_leave)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(tailor.shutdown()))

    site = GuardedSite(api_root(DocsResource(tailor)), limits=limits, access_log=settings.access_log)
    reactor.listenTCP(settings.port, site, interface=settings.host)
    log.info(
        "Tailor: curl -N 'http://{host}:{port}/api/v0.1/docs?i=<index>&q=<query>'",
        host=settings.host,
        port=settings.port,
    )
    run([wamp], log_level="info")


if __name__ == "__main__":
    main()
