"""How a service (Beater, Tailor) starts and serves: settings, logs, its site's guards, health
and metrics beside its API, the router; what differs between them is theirs."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence
from typing import TypeVar

from autobahn.twisted.component import Component, run
from twisted.internet import reactor
from twisted.logger import Logger

from estrom.health import HEALTH_PATHS, Check, add_health
from estrom.http import GuardedSite, SiteLimits, token_file
from estrom.logs import start_logging
from estrom.metrics import MetricsResource
from estrom.settings import ServiceSettings, describe, load
from estrom.tokens import TokenFile

S = TypeVar("S", bound=ServiceSettings)

# Allocations between two young collections of Python's cyclic garbage collector (700 by default).
# A batch makes tens of thousands of short-lived objects (documents, hits, the engine's answer);
# at the default, objects of a batch in flight were collected young many times over, lived on
# into the oldest generation and made it be scanned whole again and again: in the benchmark's
# throughput run with 10,000 queries the collector took about a quarter of Beater's CPU
# (0.5 of 2.0 s; at 20,000, one full collection of 0.04 s in the run). Garbage without cycles
# (nearly all of it) is freed at once either way; cyclic garbage waits for 20,000 allocations.
GC_YOUNG = 20_000


def tune_collector() -> None:
    """Set the collector for a service under load: what start-up made (modules, classes,
    settings) is frozen, never scanned again, and young collections are GC_YOUNG allocations
    apart."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, middle, old)


def start(
    settings_class: type[S], argv: Sequence[str] | None, name: str
) -> tuple[S, SiteLimits, TokenFile | None]:
    """What a service does first: its settings (``argv``, then ``ESTROM_*`` variables; the class
    adds ``host`` and ``max_connections``), its logs started, the settings logged, and its
    site's limits and token file. Exits with a message that names what is wrong instead."""
    prog = name.lower()
    log = Logger(namespace=prog)
    settings = load(settings_class, argv, prog=prog)
    try:
        start_logging(settings.log_format)
    except ValueError as e:
        sys.exit(f"{prog}: {e}")
    log.info("{name} settings:\n{settings}", name=name, settings=describe(settings))
    try:
        limits = SiteLimits.parse(
            settings.allowed_hosts, settings.request_deadline_seconds, settings.max_connections
        )
        tokens = token_file(settings.tokens, settings.host, name)
    except ValueError as e:
        sys.exit(f"{prog}: {e}")
    return settings, limits, tokens


def serve(
    settings: ServiceSettings,
    site: GuardedSite,
    guards: tuple[SiteLimits, TokenFile | None],
    checks: dict[str, Check],
    metrics: MetricsResource,
    wamp: Component,
    invitation: str,
) -> None:
    """Serve ``site`` on the settings' host and port, with ``/healthz``, ``/readyz`` (``checks``)
    and ``/metrics`` beside its API, behind its limits and token file (``guards``); log
    ``invitation`` (with ``{host}`` and ``{port}``); join the router with ``wamp``; run until
    SIGINT/SIGTERM."""
    log = Logger(namespace=type(settings).__name__.removesuffix("Settings").lower())
    add_health(site.resource, checks)
    site.resource.putChild(b"metrics", metrics)
    site.limits, site.tokens = guards
    if site.tokens is not None:
        site.tokens.watcher.on_failure.append(metrics.metrics.failed)
    site.access_log = settings.access_log
    site.open_paths = HEALTH_PATHS
    site.metrics = metrics.metrics
    # Twisted's default backlog is 50: a burst of connections (a reconnect storm) overflows it,
    # and clients retransmit their SYN after 1, 3, 7, 15 s.
    reactor.listenTCP(settings.port, site, backlog=settings.listen_backlog, interface=settings.host)
    log.info(invitation, host=settings.host, port=settings.port)
    tune_collector()
    run([wamp], log_level="info")
