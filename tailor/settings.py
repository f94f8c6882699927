from __future__ import annotations

from dataclasses import dataclass

from estrom.settings import setting


@dataclass(frozen=True)
class TailorSettings:
    """Tailor: streams the documents matching a query as one endless JSON HTTP response."""

    router_url: str = setting("ws://127.0.0.1:8080/ws", "ESTROM_ROUTER_URL", "WAMP router WebSocket URL")
    realm: str = setting("estrom", "ESTROM_REALM", "WAMP realm")
    host: str = setting("127.0.0.1", "ESTROM_TAILOR_HOST", "address the HTTP server listens on")
    port: int = setting(8090, "ESTROM_TAILOR_PORT", "port of the HTTP server")
    keepalive_seconds: float = setting(
        15.0, "ESTROM_KEEPALIVE_SECONDS", "seconds between keep-alive whitespace on quiet streams"
    )
    max_pending_hits: int = setting(
        1000,
        "ESTROM_MAX_PENDING_HITS",
        "hits kept for a client that reads slower than they arrive; past it the stream ends",
    )
