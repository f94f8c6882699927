"""``python -m beater``: run Beater until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

import txaio
from autobahn.twisted.component import run
from twisted.internet import reactor
from twisted.logger import Logger

from beater.engine import Engine
from beater.ingest import DocsResource, IngestSite
from beater.interest import Interest
from beater.percolator import Percolator
from beater.service import Beater
from beater.settings import BeaterSettings
from estrom.http import api_root
from estrom.settings import describe, load
from estrom.wamp import component

log = Logger()


def main(argv: list[str] | None = None) -> None:
    settings = load(BeaterSettings, argv, prog="beater")
    txaio.start_logging(level="info")
    log.info("Beater settings:\n{settings}", settings=describe(settings))
    if not settings.secret:
        sys.exit("beater: ESTROM_BEATER_SECRET is not set; the router admits Beater only with it")

    beater = Beater(
        Percolator(Engine(settings.elasticsearch_url), settings.percolate_page_size),
        settings.batching(),
        Interest(settings.active_grace_seconds) if settings.percolate_only_active else None,
        settings.percolate_one_by_one,
    )
    wamp = component(
        settings.router_url,
        settings.realm,
        {"ticket": {"authid": "beater", "ticket": settings.secret}},
    )
    wamp.on("join", beater.on_join)
    wamp.on("leave", beater.on_leave)

    site = IngestSite(api_root(DocsResource(beater)), settings.max_body_bytes)
    reactor.listenTCP(settings.port, site, interface=settings.host)
    log.info(
        "Beater ingest: POST documents to http://{host}:{port}/api/v0.1/docs/<index>",
        host=settings.host,
        port=settings.port,
    )
    run([wamp], log_level="info")


if __name__ == "__main__":
    main()
