"""``python -m tailor``: run Tailor until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from estrom import api
from estrom.http import GuardedSite, api_root
from estrom.metrics import MetricsResource, TailorMetrics
from estrom.service import serve, start
from estrom.wamp import component, whole_join
from tailor.request import AggsResource, DocsResource
from tailor.service import Tailor
from tailor.settings import TailorSettings
from tailor.stream import Bounds


def main(argv: list[str] | None = None) -> None:
    settings, limits, tokens = start(TailorSettings, argv, "Tailor")
    me = tokens.check(settings.token) if tokens is not None and not settings.secret else None
    if tokens is not None and not settings.secret and me is None:
        sys.exit(
            "tailor: with ESTROM_TOKENS, ESTROM_TAILOR_SECRET must be set (the router's) or ESTROM_TAILOR_TOKEN "
            "must be a token of that file (the router admits Tailor with it)"
        )

    tailor = Tailor(
        settings.keepalive_seconds,
        Bounds(settings.max_pending_hits, settings.max_pending_bytes, settings.max_behind_seconds),
        settings.call_timeout_seconds,
        settings.max_pending_total_bytes,
    )
    # With its secret, Tailor is the router's role "tailor" (the feed); else, with tokens, a reader
    # of its own. Either way it checks its clients' tokens itself.
    if settings.secret:
        authentication = {"ticket": {"authid": api.TAILOR_ROLE, "ticket": settings.secret}}
    else:
        authentication = {"ticket": {"authid": me.name, "ticket": settings.token}} if me else None
    wamp = component(
        settings.router_url, settings.realm, authentication, heartbeat=settings.router_heartbeat_seconds
    )
    if tokens is not None:
        tokens.on_change.append(tailor.revoke)
    metrics = TailorMetrics(tailor)
    wamp.on("join", whole_join(tailor.on_join, metrics.failed))
    wamp.on("leave", tailor.on_leave)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(tailor.shutdown()))

    serve(
        settings,
        GuardedSite(api_root(DocsResource(tailor), aggs=AggsResource(tailor))),
        (limits, tokens),
        {"router": tailor.readiness},
        MetricsResource(metrics),
        wamp,
        "Tailor: curl -N 'http://{host}:{port}/api/v0.1/docs?i=<index>&q=<query>'",
    )


if __name__ == "__main__":
    main()
