from __future__ import annotations

from dataclasses import dataclass

from estrom.settings import setting


@dataclass(frozen=True)
class BeaterSettings:
    """Beater: takes documents in over HTTP, percolates them, publishes the hits over WAMP."""

    elasticsearch_url: str = setting(
        "http://127.0.0.1:9200", "ESTROM_ELASTICSEARCH_URL", "search engine (Elasticsearch/OpenSearch) URL"
    )
    router_url: str = setting("ws://127.0.0.1:8080/ws", "ESTROM_ROUTER_URL", "WAMP router WebSocket URL")
    realm: str = setting("estrom", "ESTROM_REALM", "WAMP realm")
    secret: str = setting(
        "", "ESTROM_BEATER_SECRET", "WAMP-Ticket of the router's 'beater' principal", secret=True
    )
    host: str = setting("127.0.0.1", "ESTROM_BEATER_HOST", "address the ingest HTTP server listens on")
    port: int = setting(8070, "ESTROM_BEATER_PORT", "port of the ingest HTTP server")
    max_body_bytes: int = setting(10 * 1024 * 1024, "ESTROM_MAX_BODY_BYTES", "largest ingest request body")
    percolate_page_size: int = setting(
        1000, "ESTROM_PERCOLATE_PAGE_SIZE", "matching queries fetched per engine request while percolating"
    )
    batch_max_docs: int = setting(
        1000, "ESTROM_BATCH_MAX_DOCS", "documents gathered into one percolation at most"
    )
    batch_max_wait_ms: float = setting(
        5.0, "ESTROM_BATCH_MAX_WAIT_MS", "how long a document waits for others"
    )
    queue_max_docs: int = setting(
        50_000,
        "ESTROM_QUEUE_MAX_DOCS",
        "documents waiting for the engine at most; past it ingest answers 429",
    )
    percolations_in_flight: int = setting(
        2, "ESTROM_PERCOLATIONS_IN_FLIGHT", "percolations sent to the engine at once"
    )

    percolate_only_active: bool = setting(
        True,
        "ESTROM_PERCOLATE_ONLY_ACTIVE",
        "percolate only queries someone subscribes to (from the router's meta-events)",
    )

    active_grace_seconds: float = setting(
        60.0,
        "ESTROM_ACTIVE_GRACE_SECONDS",
        "a query registered or looked up counts as listened to this long, subscribed or not",
    )

    percolate_one_by_one: bool = setting(
        False,
        "ESTROM_PERCOLATE_ONE_BY_ONE",
        "one percolate request per document, as the original design did (the benchmark's baseline)",
    )

    def batching(self) -> dict:
        """The keyword arguments of beater.pipeline.Pipeline."""
        return {
            "max_docs": self.batch_max_docs,
            "max_wait": self.batch_max_wait_ms / 1000,
            "max_queued": self.queue_max_docs,
            "in_flight": self.percolations_in_flight,
        }
