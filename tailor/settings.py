"""Tailor's settings: its HTTP server and the bounds of a stream."""

from __future__ import annotations

from dataclasses import dataclass

from estrom.settings import ServiceSettings, setting
from tailor.service import CALL_SECONDS, MAX_PENDING_TOTAL
from tailor.stream import DEFAULT_BOUNDS


@dataclass(frozen=True)
class TailorSettings(ServiceSettings):
    """Tailor: streams the documents matching a query as one endless JSON HTTP response."""

    host: str = setting("127.0.0.1", "address the HTTP server listens on", env="ESTROM_TAILOR_HOST")
    port: int = setting(8090, "port of the HTTP server", env="ESTROM_TAILOR_PORT")
    keepalive_seconds: float = setting(15.0, "seconds between keep-alive whitespace on quiet streams")
    # The bounds of a stream (tailor.stream.Bounds).
    max_pending_hits: int = setting(
        DEFAULT_BOUNDS.hits, "hits kept for a client that reads slower than they arrive"
    )
    max_pending_bytes: int = setting(
        DEFAULT_BOUNDS.bytes,
        "bytes of hits kept for a client that reads slower than they arrive (keep it above the largest request)",
    )
    max_behind_seconds: float = setting(
        DEFAULT_BOUNDS.seconds, "seconds a client may stay past those bounds (a burst) before its stream ends"
    )
    max_pending_total_bytes: int = setting(
        MAX_PENDING_TOTAL,
        "bytes of hits all streams together keep for slow clients; a stream whose hits would go past "
        "it ends (as a client too far behind)",
    )
    call_timeout_seconds: float = setting(
        CALL_SECONDS,
        "seconds a stream waits for Beater's answer (a registration, a lookup, a backlog page) or "
        "the router's; then 503",
    )
    secret: str = setting(
        "",
        "Tailor's ticket at the router (as ESTROM_BEATER_SECRET is Beater's), for the router's own; with it "
        "Tailor gets each batch's hits in one event (the feed), and reads every index (it checks its clients' "
        "tokens itself)",
        secret=True,
        env="ESTROM_TAILOR_SECRET",
    )
    token: str = setting(
        "",
        "without ESTROM_TAILOR_SECRET: Tailor's own token (WAMP-Ticket at the router), one that may read every "
        "index its clients may; one of the two is needed with ESTROM_TOKENS",
        secret=True,
        env="ESTROM_TAILOR_TOKEN",
    )
    # Streams are long-lived, so this is how many clients tail at once. Each one can hold up to
    # ESTROM_MAX_PENDING_BYTES, and each is a file descriptor: raise it together with those.
    max_connections: int = setting(10_000, "connections (streams) open at once; past it new ones get 503")
