"""Beater's WAMP side: the ``estrom.register`` / ``lookup`` / ``backlog`` / ``summary``
procedures, the sweep of unused queries, and the session that beater.delivery publishes on."""

from __future__ import annotations

import os
import socket
import uuid
from collections import OrderedDict
from typing import Any

import xxhash
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.protocol import ApplicationSession
from autobahn.wamp.types import CloseDetails, RegisterOptions, SessionDetails
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.logger import Logger

from beater.cursor import Cursors, parse_since
from beater.delivery import Delivery, RouterUnavailable
from beater.documents import DEFAULT_DOCUMENT_LIMITS, DocumentLimits
from beater.engine import EngineError, EngineUnavailable
from beater.identity import Identified, highlighted, identify
from beater.indexes import InvalidIndex, check_index
from beater.interest import Interest
from beater.mapping import TooManyIndexes
from beater.percolator import Percolator, TakenOut, TooManyQueries
from beater.pipeline import Counts, Pipeline, Received
from beater.presearch import Presearcher
from beater.store import Store
from beater.summary import summarize, summary_options
from beater.validation import DEFAULT_LIMITS, InvalidQuery, Limits
from estrom import api
from estrom.coalesce import Coalesce
from estrom.cursor import CURSOR, cursor_at, node_of
from estrom.metrics import BeaterMetrics
from estrom.tokens import ANONYMOUS, Principal, TokenFile
from estrom.wamp import FeedCodec

# A caller the router did not disclose, while there are tokens: it may read nothing.
_UNDISCLOSED = Principal("undisclosed caller")
# How long a scrape of /metrics waits for the router's counts.
ROUTER_COUNT_SECONDS = 2.0
# One Beater of an engine at a time removes unused queries and follows mappings.
SWEEP_LEASE = "sweep"
# The role of router/authorizer.py's session (router/.crossbar/config.json).
ROUTERS_AUTHORIZER = "authorizer"

log = Logger()

# Batches whose copies wait to be removed that a summary leaves out, at most (one clause each);
# past it, their copies are counted (during a long engine outage only).
MAX_LEFT_OUT = 200


class Beater(Delivery):
    """Registers queries (the WAMP procedures) and delivers the documents that match them
    (beater.delivery)."""

    def __init__(
        self,
        percolator: Percolator,
        batching: dict[str, Any] | None = None,
        interest: Interest | None = None,
        limits: Limits = DEFAULT_LIMITS,
        index_patterns: tuple[str, ...] = ("*",),
        document_limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS,
        calls_in_flight: int = 8,
        calls_queued: int = 1000,
        store: Store | None = None,
        cursors: Cursors | None = None,
        tokens: TokenFile | None = None,
        metrics: BeaterMetrics | None = None,
        presearch: Presearcher | None = None,
    ):
        super().__init__(
            percolator, interest, store, cursors or Cursors(), metrics or BeaterMetrics(), presearch
        )
        if percolator is not None:
            percolator.taken_out = self._taken_out
        for counting in (percolator, store):
            if counting is not None:  # what the sweep and the store's clean-up fail to do is counted
                counting.failed = self.metrics.failed
        self.tokens = tokens  # None: every caller may read every index
        self.pipeline = Pipeline(self.deliver, **(batching or {}))
        self.metrics.watch_queue(lambda: self.pipeline.queued, lambda: self.pipeline.queued_bytes)
        self.limits = limits
        self.index_patterns = index_patterns
        self.document_limits = document_limits
        # Who this Beater is among those of one engine (the sweep's lease).
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._sweeping = False  # whether it held the lease at its last sweep
        # Registrations and lookups go to the engine at most `calls_in_flight` at a time, and
        # at most `calls_queued` wait: a reconnect storm is answered "retry" at once instead
        # of piling engine requests up until they all time out.
        self._engine_calls = DeferredSemaphore(calls_in_flight)
        self._calls_queued = calls_queued
        # Queries being saved in their percolator index, by ID. ("store" is the document store:
        # self.store, beater.store.)
        self._saving = Coalesce()
        self._identified: OrderedDict[tuple[str, str], Identified] = OrderedDict()
        self._seen: set[str] = set()  # queries registered or looked up since the last sweep

    async def on_join(self, session: ApplicationSession, details: SessionDetails) -> None:
        # Several Beaters may serve one router: calls are shared out among them.
        options = RegisterOptions(invoke="roundrobin", details_arg="details")
        await session.register(self.register, api.REGISTER, options=options)
        await session.register(self.lookup, api.LOOKUP, options=options)
        await session.register(self.backlog, api.BACKLOG, options=options)
        await session.register(self.summary, api.SUMMARY, options=options)
        if self.interest is not None:
            await self.interest.follow(session)
        session.set_payload_codec(FeedCodec())
        self.session = session
        self.metrics.router_joined.set(1)
        log.info("Beater joined realm {realm} as {authid}", realm=details.realm, authid=details.authid)

    def _taken_out(self, query_id: str, why: str) -> None:
        """Tell the subscribers of a query taken out of percolation that no hit will follow."""
        session = self.session
        if session is None:
            return  # they hear it when they open it again (a lookup says why)
        try:
            session.publish(api.topic(query_id), **{api.ENDED: why})
        except TransportLost:
            pass

    async def router_joined(self) -> str | None:
        """Beater's readiness check of the router: None once joined, with its procedures."""
        return None if self.session is not None else "not joined to the router"

    async def count_router(self) -> None:
        """Ask the router (its meta API) how many sessions the realm has and how many topics are
        subscribed to, for the metrics."""
        session = self.session
        if session is None:
            return
        try:
            sessions = await session.call("wamp.session.count").addTimeout(ROUTER_COUNT_SECONDS, reactor)
            subscriptions = await session.call("wamp.subscription.list").addTimeout(
                ROUTER_COUNT_SECONDS, reactor
            )
        except (ApplicationError, TransportLost, defer.TimeoutError, defer.CancelledError) as e:
            log.warn("the router's statistics: {error}", error=str(e))
            return
        self.metrics.router_sessions.set(sessions)
        self.metrics.router_subscriptions.set(sum(len(ids) for ids in subscriptions.values()))

    def on_leave(self, session: ApplicationSession, details: CloseDetails) -> None:
        self.session = None
        self.metrics.router_joined.set(0)
        log.warn("Beater left the router: {reason}", reason=details.reason)

    def reader(self, details: Any) -> Principal:
        """Who made a call (``details``: autobahn's CallDetails, or None), and so which indexes
        it may read. The router discloses callers (router/authorizer.py): a ``client`` session
        is the token whose name is its authid; the router's own authorizer (it asks for the
        index of a topic's query) and a Tailor admitted by its secret (it checks its clients'
        tokens itself) read everything; anyone else nothing. A call forwarded by
        another router names a caller that this router did not authenticate: nothing."""
        if self.tokens is None:
            return ANONYMOUS
        if getattr(details, "forward_for", None):
            return _UNDISCLOSED
        role = getattr(details, "caller_authrole", None)
        if role == "client":
            return self.tokens.principal(details.caller_authid) or _UNDISCLOSED
        return ANONYMOUS if role in (ROUTERS_AUTHORIZER, api.TAILOR_ROLE) else _UNDISCLOSED

    def _may_read(self, details: Any, index: str, what: str) -> None:
        reader = self.reader(details)
        if not reader.may_read(index):
            raise ApplicationError(api.NOT_AUTHORIZED, f"the token {reader.name!r} may not read {what}")

    async def register(self, index: Any, query: Any, options: Any = None, details: Any = None) -> str:
        """WAMP ``estrom.register(index, query[, {"highlight": true}]) -> id``. With highlights,
        the query has its own ID, whose hits carry the engine's highlights (api.HIGHLIGHT)."""
        try:
            highlight = _register_options(options)
            index = check_index(index, self.index_patterns)
            self._may_read(details, index, f"the index {index!r}")
            identified = self._identify(index, query)
            if highlight:
                identified = highlighted(identified)
            if self.store is not None:
                # Before the percolator index is made: it is made like the source index (if
                # there may be one more).
                await self.percolator.mappings.room_for(identified.index)
                await self.store.ensure(identified.index)
            await self._save_query(identified)
            if self.interest is not None:
                self.interest.touch(identified.id)
        except InvalidIndex as e:
            raise ApplicationError(api.INVALID_INDEX, str(e)) from None
        except InvalidQuery as e:
            raise ApplicationError(api.INVALID_QUERY, str(e)) from None
        except TooManyQueries as e:
            raise ApplicationError(api.TOO_MANY_QUERIES, str(e)) from None
        except TooManyIndexes as e:
            raise ApplicationError(api.TOO_MANY_INDEXES, str(e)) from None
        except (EngineUnavailable, EngineError) as e:
            raise ApplicationError(api.UNAVAILABLE, str(e)) from None
        self._seen.add(identified.id)
        return identified.id

    def _identify(self, index: str, query: Any) -> Identified:
        """``identify``, remembering recent answers: a reconnect storm repeats a few queries
        thousands of times, and parsing a long Lucene string is the costly part."""
        if not isinstance(query, str):
            return identify(index, query, self.limits)
        key = (index, xxhash.xxh3_128_hexdigest(query.encode("utf-8", "surrogatepass")))
        identified = self._identified.get(key)
        if identified is None:
            identified = self._identified[key] = identify(index, query, self.limits)
            if len(self._identified) > 1024:
                self._identified.popitem(last=False)
        return identified

    async def _save_query(self, identified: Identified) -> None:
        """Save a query in its percolator index once, however many callers register it at the
        same time."""
        if identified.id not in self._saving and self._engine_busy():
            raise EngineUnavailable("too many registrations wait for the search engine: retry")
        await self._saving.run(
            identified.id,
            lambda: self._engine_calls.run(lambda: Deferred.fromCoroutine(self.percolator.store(identified))),
        )

    def _engine_busy(self) -> bool:
        return not self._engine_calls.tokens and len(self._engine_calls.waiting) >= self._calls_queued

    async def lookup(self, query_id: Any, details: Any = None) -> dict[str, Any]:
        """WAMP ``estrom.lookup(id) -> {"index": ..., "query": ...}``."""
        if not isinstance(query_id, str) or len(query_id) > 64:
            raise ApplicationError(api.UNKNOWN_SUBSCRIPTION, "a subscription ID is a string of 16 hex digits")
        if self._engine_busy():
            raise ApplicationError(api.UNAVAILABLE, "too many lookups wait for the search engine: retry")
        try:
            found = await self._engine_calls.run(
                lambda: Deferred.fromCoroutine(self.percolator.find(query_id))
            )
        except TakenOut as e:
            raise ApplicationError(api.INVALID_QUERY, str(e)) from None
        except (EngineUnavailable, EngineError) as e:
            raise ApplicationError(api.UNAVAILABLE, str(e)) from None
        if found is None:
            raise ApplicationError(api.UNKNOWN_SUBSCRIPTION, f"no query has the ID '{query_id}'")
        self._may_read(details, found["index"], "the index of this subscription")
        if self.interest is not None:
            self.interest.touch(query_id)
        self._seen.add(query_id)
        return found

    async def backlog(self, query_id: Any, options: Any = None, details: Any = None) -> dict[str, Any]:
        """WAMP ``estrom.backlog(id, {"last": N, "since": time, "after": cursor})`` ->
        ``{"hits": [...], "next": {...} | None, "gap": bool}``: the stored documents that match
        query ``id``, oldest first, a page at a time (call again with ``{"page": next}`` while
        ``next`` is not None). Subscribe first, then ask: the backlog holds every matching
        document published before the call, and hits already seen live have the same cursor.

        ``last``: the newest N (at most ESTROM_MAX_BACKLOG); ``since``: from a time (ISO 8601,
        or a duration back such as ``5m``); ``after``: those after a cursor (resume). ``gap`` is
        true when more matched than a backlog holds (then the newest are given).
        """
        if self.store is None:
            raise ApplicationError(api.NO_STORE, "this estrom keeps no documents (ESTROM_STORE is off)")
        try:
            wanted = _backlog_options(options, self.store.max_backlog, self.cursors.now())
        except ValueError as e:
            raise ApplicationError(api.INVALID_ARGUMENT, str(e)) from None
        index, clause, highlight = await self._stored_query(query_id, details)
        try:
            page = await self._engine_calls.run(
                lambda: Deferred.fromCoroutine(
                    self.store.backlog(
                        index, clause, **wanted, unpublished=self._unpublished(index), highlight=highlight
                    )
                )
            )
        except (EngineUnavailable, EngineError) as e:
            raise ApplicationError(api.UNAVAILABLE, str(e)) from None
        return {"hits": page.hits, "next": page.next, "gap": page.gap}

    async def summary(self, query_id: Any, options: Any = None, details: Any = None) -> dict[str, Any]:
        """WAMP ``estrom.summary(id, {"by": [...], "k": N, "stats": [...], "histogram": "1m",
        "split": field, "since": time, "bins": bool, "fields": bool})``: the engine's aggregation of the stored
        documents that match query ``id`` (beater.summary says what it holds), with the cursor it
        covers. Subscribe first, then ask: live hits with a greater cursor, or in ``pending``,
        are the ones the summary does not hold."""
        if self.store is None:
            raise ApplicationError(api.NO_STORE, "this estrom keeps no documents (ESTROM_STORE is off)")
        try:
            asked = summary_options(options, self.cursors.now())
        except ValueError as e:
            raise ApplicationError(api.INVALID_ARGUMENT, str(e)) from None
        index, clause, _ = await self._stored_query(query_id, details)
        # Batches of this index in flight now: stored (maybe), published later, with cursors
        # below the seam's. Those whose copies wait to be removed are never published.
        pending = sorted(self._in_flight.get(index, ()))
        removing = sorted(self.store.removing.get(index, ()))[:MAX_LEFT_OUT]
        try:
            return await self._engine_calls.run(
                lambda: Deferred.fromCoroutine(summarize(self.store, index, clause, asked, pending, removing))
            )
        except ValueError as e:  # a field the store cannot count as asked
            raise ApplicationError(api.INVALID_ARGUMENT, str(e)) from None
        except EngineError as e:  # the engine will not aggregate a field so
            raise ApplicationError(api.INVALID_ARGUMENT, f"the search engine refuses: {e.reason}") from None
        except EngineUnavailable as e:
            raise ApplicationError(api.UNAVAILABLE, str(e)) from None

    async def _stored_query(self, query_id: Any, details: Any) -> tuple[str, dict[str, Any], bool]:
        """The index and the clause of query ``query_id``, and whether it was registered for
        highlights, for a read of the store; refused when too many calls wait for the engine
        already."""
        found = await self.lookup(query_id, details)
        try:
            clause = self._identify(found["index"], found["query"]).clause
        except InvalidQuery as e:
            raise ApplicationError(api.INVALID_QUERY, str(e)) from None
        if self._engine_busy():
            raise ApplicationError(api.UNAVAILABLE, "too many calls wait for the search engine: retry")
        return found["index"], clause, found.get("highlight") is True

    def _unpublished(self, index: str):
        """Whether a cursor is of one of this Beater's batches of ``index`` not published yet (in
        flight, or failed with its copies still to be removed)."""
        node = self.cursors.node

        def unpublished(cursor: Any) -> bool:
            if node_of(cursor) != node:
                return False
            if self.store is not None and self.store.removing_cursor(index, cursor):
                return True  # not published, and its copies not removed yet
            return any(first <= cursor <= last for first, last in self._in_flight.get(index, ()))

        return unpublished

    async def sweep(self, unused_for: float, lease: float = 3600.0) -> None:
        """Record which queries were used since the last sweep; then, if no other Beater is
        sweeping (the lease SWEEP_LEASE, taken for ``lease`` seconds), remove those nobody used
        for ``unused_for`` seconds, and bring percolator indexes in step with their source
        indexes' mappings (of the indexes this Beater serves). Run periodically."""
        seen, self._seen = self._seen, set()
        if self.interest is not None:
            seen |= self.interest.subscribed()
        try:
            marked = await self.percolator.sweep.mark_seen(sorted(seen), self.index_patterns)
            self._sweeping = await self.percolator.sweep.take_lease(SWEEP_LEASE, self.holder, lease)
            if not self._sweeping:
                log.info("Beater: {marked} queries in use; another Beater sweeps", marked=marked)
                return
            removed = await self.percolator.sweep.remove_unused(unused_for, self.index_patterns, keep=seen)
            await self.percolator.mappings.follow_sources(self.index_patterns)
        except (EngineUnavailable, EngineError) as e:
            self._seen |= seen  # try again next time
            log.warn("Beater: could not sweep stored queries: {error}", error=e)
            return
        log.info(
            "Beater: {marked} queries in use, {removed} unused ones removed", marked=marked, removed=removed
        )

    async def stop_sweeping(self) -> None:
        """Give the sweep's lease back (at shutdown), so another Beater takes it at its next
        sweep instead of once it has expired."""
        try:
            await self.percolator.sweep.give_lease_back(SWEEP_LEASE, self.holder)
        except (EngineUnavailable, EngineError) as e:
            log.warn("Beater: could not give the sweep's lease back: {error}", error=e)

    async def ingest(self, received: Received) -> Counts:
        """Percolate and publish the documents ``received`` (with those of concurrent requests),
        then fire with their Counts (see Pipeline.submit). Raises Overloaded or RouterUnavailable
        (nothing taken: the sender should retry); taken whole or not at all, also
        EngineUnavailable or Misconfigured (nothing taken), or UnreadableDocuments (the sender's
        to mend: not taken)."""
        if self.session is None:
            raise RouterUnavailable("Beater is not connected to the router")
        return await self.pipeline.submit(received)


def _register_options(options: Any) -> bool:
    """Whether ``estrom.register``'s options ask for highlights; ValueError-free: an
    ApplicationError names what is wrong."""
    if options is None:
        return False
    if not isinstance(options, dict) or set(options) - {"highlight"}:
        raise ApplicationError(api.INVALID_ARGUMENT, 'the options are an object: {"highlight": true}')
    highlight = options.get("highlight", False)
    if not isinstance(highlight, bool):
        raise ApplicationError(api.INVALID_ARGUMENT, "'highlight' must be true or false")
    return highlight


def _backlog_options(options: Any, most: int, now: float) -> dict[str, Any]:
    """The keyword arguments of Store.backlog from ``estrom.backlog``'s options; ValueError says
    what is wrong."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValueError(  # noqa: TRY004 - one error, an ApplicationError, for every bad option
            'the options are an object: {"last": N, "since": time, "after": cursor}'
        )
    unknown = set(options) - {"last", "since", "after", "page"}
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    if "page" in options:
        page = options["page"]
        if len(options) > 1 or not isinstance(page, dict) or set(page) != {"after", "until"}:
            raise ValueError("'page' is the 'next' of a previous answer, alone")
        for value in page.values():
            _cursor(value, "page")
        return {"page": {"after": page["after"], "until": page["until"]}}
    wanted: dict[str, Any] = {}
    if options.get("last") is not None:
        last = options["last"]
        if isinstance(last, bool) or not isinstance(last, int) or not 1 <= last <= most:
            raise ValueError(f"'last' must be a whole number from 1 to {most}")
        wanted["last"] = last
    if options.get("since") is not None:
        if not isinstance(options["since"], str):
            raise ValueError("'since' must be a string: a duration such as 5m, or an ISO 8601 time")
        wanted["since"] = cursor_at(parse_since(options["since"], now))
    if options.get("after") is not None:
        wanted["after"] = _cursor(options["after"], "after")
    if not wanted:
        raise ValueError("give 'last', 'since' or 'after' (or 'page')")
    return wanted


def _cursor(value: Any, name: str) -> str:
    if not isinstance(value, str) or not CURSOR.fullmatch(value):
        raise ValueError(f"'{name}' must be a cursor: 20 hex digits, as a hit's '_cursor'")
    return value
