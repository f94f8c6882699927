"""Beater's settings: its HTTP server, the engine, query and document limits, batching, the store."""

from __future__ import annotations

from dataclasses import dataclass

from beater.compat import ElasticsearchVersion
from beater.documents import DocumentLimits
from beater.validation import Limits
from estrom.settings import ServiceSettings, setting
from estrom.wamp import max_message_bytes


@dataclass(frozen=True)
class BeaterSettings(ServiceSettings):
    """Beater: takes documents in over HTTP, percolates them, publishes the hits over WAMP."""

    # Where it connects.
    elasticsearch_url: str = setting("http://127.0.0.1:9200", "search engine (Elasticsearch/OpenSearch) URL")
    secret: str = setting(
        "", "WAMP-Ticket of the router's 'beater' principal", secret=True, env="ESTROM_BEATER_SECRET"
    )

    # The ingest HTTP server, and the request bodies it holds.
    host: str = setting("127.0.0.1", "address the ingest HTTP server listens on", env="ESTROM_BEATER_HOST")
    port: int = setting(8070, "port of the ingest HTTP server", env="ESTROM_BEATER_PORT")
    max_body_bytes: int = setting(10 * 1024 * 1024, "largest ingest request body")
    max_bytes_in_flight: int = setting(
        256 * 1024 * 1024,
        "bytes of request bodies (and their gunzipped copies) Beater holds at once, from their "
        "Content-Length until answered; past it 429 + Retry-After before the body is read",
    )
    off_reactor_bytes: int = setting(
        256 * 1024,
        "request bodies from this size on (a sixteenth of it gzipped) are gunzipped and parsed in a "
        "thread, not on the reactor's",
    )

    # What a request, a document and a query may be.
    max_docs_per_request: int = setting(10_000, "most documents in one ingest request; past it 413")
    max_document_depth: int = setting(64, "deepest nesting of objects and arrays in a document")
    max_query_bytes: int = setting(16 * 1024, "longest query: a Lucene string, or the DSL as compact JSON")
    max_query_depth: int = setting(32, "deepest nesting of a query's JSON, or of a Lucene string's groups")
    max_query_clauses: int = setting(1024, "most array items (clauses, values) or Lucene terms in a query")
    max_pattern_length: int = setting(1000, "longest regexp, wildcard or prefix pattern in a query")
    max_determinized_states: int = setting(10_000, "highest max_determinized_states a query may ask for")

    # What it answers as, and which indexes it serves.
    compat_version: str = setting(
        ElasticsearchVersion("8.17.0"),
        "the Elasticsearch version Beater answers as at GET / and in _bulk answers (7.x.y, 8.x.y or "
        "9.x.y): the official clients 8 and 9 and the shippers built on them take 8.x and 9.x",
    )
    otlp_index: str = setting(
        "logs-{dataset}-{namespace}",
        "the index of an OTLP log record without an estrom.index attribute; {dataset} and {namespace} "
        "are its data_stream.dataset and data_stream.namespace (generic, default when absent)",
    )
    index_patterns: str = setting(
        "*", "comma-separated shell patterns of the index names served (e.g. logs-*)"
    )

    # The percolator indexes, and the sweep of the queries in them.
    percolator_replicas: str = setting(
        "0-1", "replicas of each percolator index: a number, or a range the engine auto-expands within"
    )
    max_percolator_indexes: int = setting(
        100,
        "percolator indexes (one per index queries are registered on) at most; a query on a new "
        "index past it is refused",
    )
    max_queries_per_index: int = setting(
        10_000, "stored queries per index at most; past it registering is refused"
    )
    query_retention_days: float = setting(
        30.0, "stored queries nobody registered, looked up or listened to for this long are removed"
    )
    query_sweep_seconds: float = setting(
        3600.0, "how often Beater records queries in use and removes unused ones"
    )

    # Registrations and lookups.
    engine_calls_in_flight: int = setting(8, "registrations and lookups sent to the engine at once")
    engine_calls_queued: int = setting(
        1000, "registrations and lookups waiting for the engine at most; past it they are refused: retry"
    )

    # Percolation: batches, and the queue in front of the engine.
    percolate_page_size: int = setting(1000, "matching queries fetched per engine request while percolating")
    batch_max_docs: int = setting(1000, "documents gathered into one percolation at most")
    batch_max_wait_ms: float = setting(
        0.0, "how long a batch waits for more documents when the engine is idle (0: not at all)"
    )
    queue_max_docs: int = setting(
        50_000, "documents waiting for the engine at most; past it ingest answers 429"
    )
    queue_max_bytes: int = setting(
        64 * 1024 * 1024, "request bytes waiting for the engine at most; past it ingest answers 429"
    )
    percolations_in_flight: int = setting(2, "percolations sent to the engine at once")

    # Which documents and queries are percolated.
    percolate_only_active: bool = setting(
        True, "percolate only queries someone subscribes to (from the router's meta-events)"
    )

    presearch: bool = setting(
        True,
        "percolate only the documents a listened-to query can match (what each query needs, decided "
        "as the engine would: docs/percolation.md); needs ESTROM_PERCOLATE_ONLY_ACTIVE",
    )

    active_grace_seconds: float = setting(
        60.0,
        "a query registered or looked up (through any Beater) counts as listened to this long, "
        "subscribed or not; every Beater of a router needs the same value",
    )

    # The store (docs/store.md).
    store: bool = setting(
        False, "index each document in its own index too, before the sender's 2xx (for backlogs and resume)"
    )
    max_backlog: int = setting(
        10_000, "documents a stream's backlog holds at most (the store's, on connect or resume)"
    )

    # Time and connections.
    engine_timeout_seconds: float = setting(
        30.0, "seconds an engine request may take, connecting to the last byte of the answer; then 503"
    )
    max_connections: int = setting(1024, "connections open at once; past it new ones get 503")

    def indexes(self) -> tuple[str, ...]:
        """The patterns of ``index_patterns``."""
        return tuple(pattern.strip() for pattern in self.index_patterns.split(",") if pattern.strip())

    def document_limits(self) -> DocumentLimits:
        """How many documents a request may carry, and how deep (beater.ingest)."""
        return DocumentLimits(
            max_documents=self.max_docs_per_request,
            max_depth=self.max_document_depth,
            # A hit is one document with its index and ID, in one publication: leave room.
            max_encoded_bytes=max_message_bytes(self.router_url) - 64 * 1024,
        )

    def query_limits(self) -> Limits:
        """How big a query may be (beater.validation)."""
        return Limits(
            max_bytes=self.max_query_bytes,
            max_depth=self.max_query_depth,
            max_clauses=self.max_query_clauses,
            max_pattern_length=self.max_pattern_length,
            max_determinized_states=self.max_determinized_states,
        )

    def batching(self) -> dict:
        """The keyword arguments of beater.pipeline.Pipeline."""
        return {
            "max_docs": self.batch_max_docs,
            "max_wait": self.batch_max_wait_ms / 1000,
            "max_queued": self.queue_max_docs,
            "max_queued_bytes": self.queue_max_bytes,
            "in_flight": self.percolations_in_flight,
        }
