"""Tailor's WAMP session, shared by every stream: a query registered or looked up through
Beater, one subscription per topic, each event handed to the topic's streams (tailor.stream), and
a backlog read from Beater's store before a stream goes live.
"""

from __future__ import annotations

from typing import Any

from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.protocol import ApplicationSession
from autobahn.wamp.types import CloseDetails, SessionDetails
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.server import Request

from estrom import api
from estrom.coalesce import Coalesce
from estrom.http import ByteBudget, principal_of, send_error
from estrom.wamp import FeedCodec
from tailor.aggregate import DISTINCT_ALL, Aggregation, Options, duration_name
from tailor.resends import Resends
from tailor.stream import DEFAULT_BOUNDS, Bounds, FrameGroup, FrameStream, Stream, encode_hit

log = Logger()

# Two engine timeouts: a registration ensures a mapping and stores a query with a refresh; a
# backlog page is a refresh and a search.
CALL_SECONDS = 60.0
# Bytes of hits all streams together keep for slow clients (ESTROM_MAX_PENDING_TOTAL_BYTES).
MAX_PENDING_TOTAL = 1024 * 1024 * 1024

# WAMP errors Tailor passes on as HTTP statuses; anything else from the router is a 503.
_STATUS = {
    api.INVALID_QUERY: 400,
    api.INVALID_INDEX: 400,
    api.INVALID_ARGUMENT: 400,
    api.NO_STORE: 400,
    "wamp.error.invalid_argument": 400,
    # The router refused the call or subscription: a client's token, or a client of Tailor's
    # that it may not serve.
    "wamp.error.not_authorized": 403,
    api.UNKNOWN_SUBSCRIPTION: 404,
    api.TOO_MANY_QUERIES: 429,  # until unused queries are removed: no Retry-After
    api.TOO_MANY_INDEXES: 429,  # until percolator indexes are removed: no Retry-After
    # Tailor checks its client's token first: when Beater refuses, Tailor's own token
    # (ESTROM_TAILOR_TOKEN) may not read what its clients may, a misconfiguration (logged).
    api.NOT_AUTHORIZED: 500,
    "wamp.error.runtime_error": 500,  # a bug in Beater: retrying will not help
}


class Tailor:
    """The WAMP session shared by all streams, and the streams themselves.

    Tailor holds one subscription per topic and hands each event to that topic's streams
    itself: when one stream ends on its limit, the others on the topic still get the event.
    """

    def __init__(
        self,
        keepalive: float,
        bounds: Bounds = DEFAULT_BOUNDS,
        call_seconds: float = CALL_SECONDS,
        max_pending_total: int = MAX_PENDING_TOTAL,
    ):
        self.keepalive = keepalive
        self.bounds = bounds  # of each stream
        # What all streams together keep for clients that read slower than hits arrive.
        self.pending = ByteBudget(max_pending_total)
        # How long a call to Beater (through the router) or to the router may take: a peer that
        # never answers must not leave a client waiting for its head.
        self.call_seconds = call_seconds
        self.session = None
        self.fed = False  # whether the router admitted Tailor as role "tailor" (the feed)
        self.topics: dict[str, set[Stream]] = {}
        # What estrom.metrics reports: streams opened; hits sent by streams that ended; streams
        # dropped because their client fell behind, and the hits they held.
        self.opened = self.sent_by_ended = self.dropped = self.hits_dropped = 0
        self.resends = Resends()  # named documents handed on: their resends are known
        self._subscriptions: dict[str, Any] = {}
        self._subscribing = Coalesce()  # by topic: never two subscriptions to one topic
        self._groups: dict[tuple[str, Options, float], FrameGroup] = {}  # aggregation streams

    @property
    def streams(self) -> list[Stream]:
        return [stream for streams in self.topics.values() for stream in streams]

    async def readiness(self) -> str | None:
        """Tailor's readiness check: None when it is joined to the router and a Beater answers
        there (a lookup of an ID no query has), else why not."""
        session = self.session
        if session is None:
            return "not joined to the router"
        try:
            await session.call(api.LOOKUP, "0" * 16).addTimeout(READY_CALL_SECONDS, reactor)
        except ApplicationError as e:
            if e.error == api.UNKNOWN_SUBSCRIPTION:
                return None
            if e.error == "wamp.error.no_such_procedure":
                return "no Beater is joined to the router"
            return f"Beater answered {e.error}"
        except (TransportLost, defer.TimeoutError, defer.CancelledError):
            return "the router or Beater did not answer"
        return "Beater answered a lookup of an unknown ID"

    async def on_join(self, session: ApplicationSession, details: SessionDetails) -> None:
        # As the router's role "tailor", Beater sends the hits of the queries it follows on the
        # feed, once per batch, and leaves Tailors out of their own topics' events.
        self.fed = details.authrole == api.TAILOR_ROLE
        if self.fed:
            session.set_payload_codec(FeedCodec())
            await session.subscribe(self._fed, api.FEED).addTimeout(self.call_seconds, reactor)
        self.session = session
        log.info(
            "Tailor joined realm {realm} as {role}{feed}",
            realm=details.realm,
            role=details.authrole,
            feed=", fed" if self.fed else "",
        )

    def on_leave(self, session: ApplicationSession, details: CloseDetails) -> None:
        self.session = None
        log.warn("Tailor left the router: {reason}", reason=details.reason)
        # The router dropped our subscriptions with the session: a stream that went on would
        # silently miss documents, so end each one, saying why.
        self._subscriptions.clear()
        for stream in self.streams:
            stream.close(error="Tailor lost its connection to the router")

    async def shutdown(self) -> None:
        """End every stream with a valid JSON end, and let the bytes reach the clients."""
        transports = [stream.request.channel.transport for stream in self.streams]
        for stream in self.streams:
            stream.close()
        for transport in transports:
            if transport is not None:
                transport.loseConnection()
        for _ in range(200):
            if not any(t is not None and t.connected for t in transports):
                return
            await deferLater(reactor, 0.01, lambda: None)

    async def open(
        self,
        request: Request,
        index: str | None,
        query: Any,
        sid: str | None,
        limit: int | None,
        backlog: dict[str, Any] | None = None,
        aggregation: tuple[Options, float] | None = None,
        highlight: bool = False,
    ) -> None:
        """Open a stream of the hits of a query (or of ``aggregation``'s frames: its options,
        and seconds between frames) for ``request``, or answer it with why not. With
        ``highlight``, the query registered for highlights (its own ID) is streamed."""
        session = self.session
        if session is None:
            send_error(request, 503, "Tailor is not connected to the router", {"Retry-After": "1"})
            return
        reader = principal_of(request)
        if index is not None and not reader.may_read(index):
            send_error(request, 403, f"the token {reader.name!r} may not read the index {index!r}")
            return
        finished = request.notifyFinish().addErrback(lambda _: None)  # fired: the client is gone
        try:
            marked = [{"highlight": True}] if highlight else []
            if sid is None:
                sid = await self._call(session, api.REGISTER, index, query, *marked)
            else:
                found = await self._call(session, api.LOOKUP, sid)
                if not reader.may_read(found["index"]):
                    send_error(
                        request, 403, f"the token {reader.name!r} may not read the index of this subscription"
                    )
                    return
                if highlight and not found.get("highlight"):
                    sid = await self._call(session, api.REGISTER, found["index"], found["query"], *marked)
        except ApplicationError as e:
            _answer_refused(request, e)
            return
        except TransportLost:
            send_error(request, 503, "Tailor lost the router", {"Retry-After": "1"})
            return
        except (defer.TimeoutError, defer.CancelledError):
            message = f"Beater did not answer within {self.call_seconds:g} s: retry"
            send_error(request, 503, message, {"Retry-After": "1"})
            return
        if finished.called or self.session is not session:
            return
        topic = api.topic(sid)
        if aggregation is None:
            stream = Stream(
                request, topic, limit, self.keepalive, self._ended, self.bounds, budget=self.pending
            )
        else:
            options, every = aggregation
            group = self._group(topic, options, every)
            stream = FrameStream(
                request,
                topic,
                None,
                self.keepalive,
                self._ended,
                self.bounds,
                budget=self.pending,
                aggregation=group.aggregation if group else Aggregation(options, reactor.seconds()),
                every=every,
                group=group,
            )
        stream.reader = reader.name
        stream.since = self.resends.deliveries + 1
        stream.after = (backlog or {}).get("after")
        backfill = aggregation is not None and aggregation[0].since is not None
        if backlog or backfill:
            stream.hold()
        self.opened += 1
        self.topics.setdefault(topic, set()).add(stream)
        finished.addBoth(lambda _: stream.gone())
        try:
            if topic not in self._subscriptions:
                await self._subscribing.run(
                    topic, lambda: Deferred.fromCoroutine(self._subscribe(session, topic))
                )
        except ApplicationError as e:
            stream.discard()
            if e.error == "wamp.error.not_authorized":
                send_error(request, 403, f"the router refused the subscription: {_message(e)}")
            else:
                send_error(request, 503, f"cannot subscribe: {e}", {"Retry-After": "1"})
            return
        except (TransportLost, defer.TimeoutError, defer.CancelledError) as e:
            stream.discard()
            reason = str(e) or f"the router did not answer within {self.call_seconds:g} s"
            send_error(request, 503, f"cannot subscribe: {reason}", {"Retry-After": "1"})
            return
        if stream.closed:  # the client may have gone, or the router, meanwhile
            return
        if backfill:
            await self._backfill(session, stream, sid)
        elif backlog:
            await self._backlog(session, stream, sid, backlog)
        else:
            stream.start(sid)

    def _group(self, topic: str, options: Options, every: float) -> FrameGroup | None:
        """The group of aggregation streams ``options`` and ``every`` on ``topic`` join: those of
        a rolling window, whose frames are the same for every reader but for the count since it
        opened (everything since a stream opened, or since a time, is its own)."""
        if options.window is None or options.since is not None:
            return None
        key = (topic, options, every)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = FrameGroup(Aggregation(options, reactor.seconds()), every)
            group.since = self.resends.deliveries + 1
            group.ended = lambda ended: self._groups.pop(key) if self._groups.get(key) is ended else None
        return group

    async def _backfill(self, session: ApplicationSession, stream: FrameStream, sid: str) -> None:
        """Start an aggregation ``since`` a time with Beater's summary of the stored matches
        (subscribed first: the live hits it does not hold are counted after it), then go on."""
        options = stream.aggregation.options
        asked = {
            "by": list(dict.fromkeys((*options.by, *((options.split,) if options.split else ())))),
            "k": DISTINCT_ALL,
            "stats": list(options.stats),
            "histogram": duration_name(options.interval),
            "since": options.since,
            "bins": True,
        }
        if options.split:
            asked["split"] = options.split
        try:
            summary = await self._call(session, api.SUMMARY, sid, asked)
        except ApplicationError as e:
            stream.discard()
            _answer_refused(stream.request, e)
            return
        except (TransportLost, defer.TimeoutError, defer.CancelledError):
            stream.discard()
            send_error(
                stream.request, 503, "Beater did not count the stored documents: retry", {"Retry-After": "1"}
            )
            return
        if stream.closed:
            return
        stream.backfill(summary)
        stream.start(sid)

    async def _backlog(
        self, session: ApplicationSession, stream: Stream, sid: str, options: dict[str, Any]
    ) -> None:
        """Start ``stream`` with the stored hits ``options`` ask for, a page at a time as the
        client takes them, then go on live. Subscribed before the first page is asked for: the
        backlog and the live hits meet without a gap, and the live copies of backlog hits are
        skipped. Without a store, resuming (``after``) says ``"gap": true``."""
        request = stream.request
        try:
            answer = await self._call(session, api.BACKLOG, sid, options)
        except ApplicationError as e:
            if e.error == api.NO_STORE and set(options) == {"after"}:
                answer = {"hits": [], "next": None, "gap": True}
            else:
                stream.discard()
                _answer_refused(request, e)
                return
        except (TransportLost, defer.TimeoutError, defer.CancelledError):
            stream.discard()
            send_error(request, 503, "Beater did not give the backlog: retry", {"Retry-After": "1"})
            return
        if stream.closed:
            return
        stream.start(sid, gap=bool(answer.get("gap")))
        while True:
            hits = answer.get("hits") or []
            keep = self.resends.keep(stream, self.resends.copies(stream.topic, hits), len(hits))
            stream.send_backlog(hits if keep is None else [hits[slot] for slot in keep])
            if not answer.get("next"):
                break
            await stream.drained()  # the client has read it: memory holds one page at a time
            if stream.closed:
                return
            try:
                answer = await self._call(session, api.BACKLOG, sid, {"page": answer["next"]})
            except Exception as e:  # noqa: BLE001 - the head is sent: end the JSON, saying why
                error = _message(e) if isinstance(e, ApplicationError) else type(e).__name__
                stream.close(error=f"the backlog could not be read whole: {error}; resume after the last hit")
                return
            if stream.closed:
                return
        stream.release()

    def _call(self, session: ApplicationSession, procedure: str, *args: Any) -> Deferred:
        """``procedure(*args)`` through the router, given up (TimeoutError) after
        ``call_seconds``."""
        return session.call(procedure, *args).addTimeout(self.call_seconds, reactor)

    async def _subscribe(self, session: ApplicationSession, topic: str) -> None:
        subscription = await session.subscribe(
            lambda *hits, **more: self._deliver(topic, hits, more), topic
        ).addTimeout(self.call_seconds, reactor)
        if topic in self.topics and self.session is session:
            self._subscriptions[topic] = subscription
        else:  # every stream on it ended while the router answered, or the session is gone
            subscription.unsubscribe().addErrback(lambda _: None)

    def _fed(self, *hits: Any, **more: Any) -> None:
        """An event of the feed: hits, each once, and the queries they matched (api.MATCHES),
        handed to the streams of the topics Tailor subscribes to (the rest are other Tailors')."""
        matches = more.get(api.MATCHES)
        if not isinstance(matches, dict):
            log.warn("Tailor: a feed event without its matches, dropped")
            return
        for query_id, positions in matches.items():
            topic = api.topic(query_id)
            if topic in self._subscriptions:
                try:
                    chosen = tuple(hits[position] for position in positions)
                except (TypeError, IndexError):
                    log.warn(
                        "Tailor: a feed event's matches of {query_id} are not its hits", query_id=query_id
                    )
                    continue
                self._deliver(topic, chosen, {})

    def _deliver(self, topic: str, hits: tuple, more: dict[str, Any]) -> None:
        streams = list(self.topics.get(topic, ()))
        if api.ENDED in more:  # the query was taken out of percolation: no hit will follow
            for stream in streams:
                stream.close_when_sent(str(more[api.ENDED]))
            return
        _, copies = self.resends.deliver(topic, hits)
        encoded = cursors = None
        now = reactor.seconds()
        counted: set[FrameGroup] = set()
        for stream in streams:
            if isinstance(stream, FrameStream) and stream.group is not None:
                if stream.group not in counted:  # once for the whole group
                    counted.add(stream.group)
                    keep = self.resends.keep(stream.group, copies, len(hits))
                    stream.add(hits if keep is None else [hits[slot] for slot in keep], now)
                continue
            keep = self.resends.keep(stream, copies, len(hits))
            if isinstance(stream, FrameStream):
                stream.add(hits if keep is None else [hits[slot] for slot in keep], now)
                continue
            if encoded is None:  # once, for every stream
                encoded = [encode_hit(hit) for hit in hits]
                cursors = [hit.get("_cursor") if isinstance(hit, dict) else None for hit in hits]
            if keep is None:
                stream.send(encoded, cursors)
            else:
                stream.send([encoded[slot] for slot in keep], [cursors[slot] for slot in keep])

    def revoke(self, names: set[str]) -> None:
        """End the streams of clients whose token was removed or changed (they may open them
        again if their token is still valid)."""
        for stream in self.streams:
            if stream.reader in names:
                stream.close(error="the token was removed or changed")

    def _ended(self, stream: Stream) -> None:
        self.sent_by_ended += stream.sent
        if stream.dropped is not None:
            self.dropped += 1
            self.hits_dropped += stream.dropped
        streams = self.topics.get(stream.topic, set())
        streams.discard(stream)
        if streams:
            return
        self.topics.pop(stream.topic, None)
        subscription = self._subscriptions.pop(stream.topic, None)
        if subscription is not None and subscription.active:
            try:
                subscription.unsubscribe().addErrback(lambda _: None)
            except TransportLost:
                pass  # the session is gone, and its subscriptions with it


# How long a readiness probe waits for a Beater's answer.
READY_CALL_SECONDS = 5.0


def _answer_refused(request: Request, error: ApplicationError) -> None:
    """Answer a stream's request that Beater or the router refused with ``error``."""
    status = _STATUS.get(error.error, 503)
    if error.error == api.NOT_AUTHORIZED:
        log.error(
            "Beater refused Tailor's own token: ESTROM_TAILOR_TOKEN must read every index its "
            "clients may ({error})",
            error=_message(error),
        )
        message = f"Tailor is not allowed to serve this: {_message(error)} (a misconfiguration, logged)"
    else:
        message = _message(error)
    send_error(request, status, message, {"Retry-After": "1"} if status == 503 else None)


def _message(error: ApplicationError) -> str:
    return error.args[0] if error.args else error.error
