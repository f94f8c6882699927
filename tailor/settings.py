from __future__ import annotations

from dataclasses import dataclass

from estrom.http import access_log_setting, allowed_hosts_setting, request_deadline_setting, tokens_setting
from estrom.logs import log_format_setting
from estrom.settings import setting
from estrom.wamp import router_heartbeat_setting, router_url_setting


@dataclass(frozen=True)
class TailorSettings:
    """Tailor: streams the documents matching a query as one endless JSON HTTP response."""

    router_url: str = router_url_setting()
    router_heartbeat_seconds: float = router_heartbeat_setting()
    realm: str = setting("estrom", "ESTROM_REALM", "WAMP realm")
    host: str = setting("127.0.0.1", "ESTROM_TAILOR_HOST", "address the HTTP server listens on")
    port: int = setting(8090, "ESTROM_TAILOR_PORT", "port of the HTTP server")
    keepalive_seconds: float = setting(
        15.0, "ESTROM_KEEPALIVE_SECONDS", "seconds between keep-alive whitespace on quiet streams"
    )
    max_pending_hits: int = setting(
        1000,
        "ESTROM_MAX_PENDING_HITS",
        "hits kept for a client that reads slower than they arrive",
    )
    max_pending_bytes: int = setting(
        16 * 1024 * 1024,
        "ESTROM_MAX_PENDING_BYTES",
        "bytes of hits kept for a client that reads slower than they arrive (keep it above the largest request)",
    )
    max_behind_seconds: float = setting(
        2.0,
        "ESTROM_MAX_BEHIND_SECONDS",
        "seconds a client may stay past those bounds (a burst) before its stream ends",
    )
    tokens: str = tokens_setting()
    log_format: str = log_format_setting()
    token: str = setting(
        "",
        "ESTROM_TAILOR_TOKEN",
        "Tailor's own token (WAMP-Ticket at the router), one that may read every index its clients may; "
        "needed with ESTROM_TOKENS",
        secret=True,
    )
    allowed_hosts: str = allowed_hosts_setting()
    request_deadline_seconds: float = request_deadline_setting()
    access_log: bool = access_log_setting()
    # Streams are long-lived, so this is how many clients tail at once. Each one can hold up to
    # ESTROM_MAX_PENDING_BYTES, and each is a file descriptor: raise it together with those.
    max_connections: int = setting(
        10_000, "ESTROM_MAX_CONNECTIONS", "connections (streams) open at once; past it new ones get 503"
    )
