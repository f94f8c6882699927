"""Where documents go out: ``GET /api/v0.1/docs?i=<index>&q=<query>`` or ``?s=<ID>``.

The response is one JSON object, ``{"subscription_id": "<ID>", "hits": [ ... ]}``, whose array
grows as matching documents arrive, so that a streaming parser (``ijson.items(body,
"hits.item")``) yields each hit at once. The head is sent only once the subscription is in
place: nothing published after it can be missed. The object is closed (``]}``) after ``limit``
hits, when Tailor shuts down, or when Tailor loses the router (then with an ``"error"``), so the
body is valid JSON whenever it ends.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from estrom import api
from estrom.coalesce import Coalesce
from estrom.http import answer_later, only, principal_of, send_error

log = Logger()

BACKLOG_CALL_SECONDS = 60.0  # two engine timeouts: a refresh and a search

# WAMP errors Tailor passes on as HTTP statuses; anything else from the router is a 503.
_STATUS = {
    api.INVALID_QUERY: 400,
    api.INVALID_INDEX: 400,
    api.INVALID_ARGUMENT: 400,
    api.NO_STORE: 400,
    "wamp.error.invalid_argument": 400,
    api.NOT_AUTHORIZED: 403,  # Tailor's own token may not read it
    api.UNKNOWN_SUBSCRIPTION: 404,
    api.TOO_MANY_QUERIES: 429,  # until unused queries are removed: no Retry-After
    "wamp.error.runtime_error": 500,  # a bug in Beater: retrying will not help
}


@implementer(IPushProducer)
class Stream:
    """One client's endless response.

    A push producer: when the client reads slower than hits arrive, the transport pauses it and
    hits wait here. A client that stays further behind than ``max_pending`` hits or
    ``max_pending_bytes`` bytes for ``max_behind`` seconds is closed with a valid end that says
    how many hits it missed (``], "dropped": N}``). The seconds are for bursts: events that arrive
    back to back reach a client that keeps up before the transport could write a byte of them.
    Past twice the bytes the stream ends at once: memory stays bounded, whatever the documents.
    """

    def __init__(
        self,
        request: Request,
        topic: str,
        limit: int | None,
        keepalive: float,
        max_pending: int,
        on_end,
        max_pending_bytes: int = 16 * 1024 * 1024,
        max_behind: float = 2.0,
        clock=reactor,
    ):
        self.request = request
        self.topic = topic
        self.limit = limit
        self.sent = 0
        self.started = False
        self.closed = False
        self.paused = False
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._max_behind = max_behind
        self._clock = clock
        self._behind = None  # the call that ends the stream, while it is past the bounds
        self._holding: list[tuple[str | None, bytes]] | None = None  # live hits, during a backlog
        self._held_bytes = 0
        # By Beater (a cursor's last 4 digits): the cursors of backlog hits not yet seen live,
        # oldest first. One Beater's hits of an index arrive by cursor, so a live hit from it
        # passes all of its backlog's cursors below its own: those cannot come live any more.
        self._seen: dict[str, deque[str]] = {}
        self._drained: list[Deferred] = []
        self.disconnected = False  # the client went away (request.notifyFinish fired)
        self._on_end = on_end  # called once, when the stream ends for whatever reason
        self._keepalive = LoopingCall(self._idle)
        self._keepalive.clock = clock
        self._keepalive_seconds = keepalive

    def start(self, subscription_id: str, gap: bool = False) -> None:
        """Send the head (saying ``"gap": true`` if hits before these may be missing)."""
        self.started = True
        self.request.setResponseCode(200)
        self.request.setHeader(b"Content-Type", b"application/json")
        self.request.setHeader(b"Cache-Control", b"no-cache")
        self.request.setHeader(b"X-Accel-Buffering", b"no")  # don't let a proxy hold hits back
        self.request.registerProducer(self, True)
        self._write(
            b'{"subscription_id": %s, %s"hits": [\n'
            % (json.dumps(subscription_id).encode(), b'"gap": true, ' if gap else b"")
        )
        self._keepalive.start(self._keepalive_seconds, now=False)

    def hold(self) -> None:
        """Keep live hits back until ``release``: a backlog goes first."""
        self._holding = []

    def send_backlog(self, hits: list[dict]) -> None:
        """Write hits of the backlog (oldest first); their live copies will be skipped."""
        for hit in hits:
            cursor = hit.get("_cursor")
            if isinstance(cursor, str) and len(cursor) == 20:
                self._seen.setdefault(cursor[-4:], deque()).append(cursor)
        self._send([json.dumps(hit).encode("utf-8") for hit in hits])

    def release(self) -> None:
        """Write the live hits kept back (but those the backlog had), and go on live."""
        held, self._holding, self._held_bytes = self._holding or [], None, 0
        if held:
            self.send([hit for _, hit in held], [cursor for cursor, _ in held])

    def drained(self) -> Deferred[None]:
        """Fires once nothing waits for the client (at once if so), or the stream ended."""
        done: Deferred[None] = Deferred()
        self._drained.append(done)
        self._check_drained()
        return done

    def _check_drained(self) -> None:
        if self.closed or (not self._pending and not self.paused):
            drained, self._drained = self._drained, []
            for done in drained:
                done.callback(None)

    def send(self, hits: list[bytes], cursors: list[str | None] | None = None) -> None:
        """Write live ``hits`` (each already JSON-encoded; ``cursors``: theirs), or keep them
        while the client is slow or a backlog goes first."""
        if self.closed:
            return
        if self._holding is not None:
            self._holding.extend(zip(cursors or [None] * len(hits), hits))
            self._held_bytes += sum(len(hit) for hit in hits)
            if self._held_bytes > 2 * self._max_pending_bytes:  # memory stays bounded
                self._pending.extend(hit for _, hit in self._holding)
                self._holding = None
                self._drop()
            return
        if self._seen and cursors is not None:
            hits = [hit for hit, cursor in zip(hits, cursors) if not self._in_backlog(cursor)]
        self._send(hits)

    def _in_backlog(self, cursor: str | None) -> bool:
        if not isinstance(cursor, str):
            return False
        node = cursor[-4:]
        cursors = self._seen.get(node)
        if not cursors:
            return False
        while cursors and cursors[0] < cursor:
            cursors.popleft()
        found = bool(cursors) and cursors[0] == cursor
        if found:
            cursors.popleft()
        if not cursors:
            del self._seen[node]
        return found

    def _send(self, hits: list[bytes]) -> None:
        for hit in hits:
            if self.closed:
                return
            if self.limit is not None and self.sent + len(self._pending) >= self.limit:
                break  # the limit is reached once what waits is written
            self._pending.append(hit)
            self._pending_bytes += len(hit)
            self._flush()
        if self.closed or not self._past_bounds():
            return
        if self._pending_bytes > 2 * self._max_pending_bytes:
            return self._drop()
        if self._behind is None:
            self._behind = self._clock.callLater(self._max_behind, self._drop)

    def _past_bounds(self) -> bool:
        return len(self._pending) > self._max_pending or self._pending_bytes > self._max_pending_bytes

    dropped: int | None = None  # hits dropped with the stream, if the client fell behind
    reader: str | None = None  # the name of the token the client showed

    def _drop(self) -> None:
        self._behind = None
        self.dropped = len(self._pending)
        log.info(
            "Tailor: a client on {topic} fell too far behind: {dropped} hits dropped, stream ended",
            topic=self.topic,
            dropped=len(self._pending),
        )
        self.close(dropped=len(self._pending))

    def close(self, error: str | None = None, dropped: int = 0) -> None:
        """End the JSON object and the response."""
        if self.closed:
            return
        if not self.started:  # nothing sent yet: an ordinary error answer
            self._end()
            return send_error(self.request, 503, error or "Tailor is shutting down", {"Retry-After": "1"})
        self._pending.clear()
        extra = {key: value for key, value in (("error", error), ("dropped", dropped)) if value}
        self._write(
            b"\n]"
            + b"".join(
                b", %s: %s" % (json.dumps(k).encode(), json.dumps(v).encode()) for k, v in extra.items()
            )
            + b"}\n"
        )
        self._end()
        if not self.disconnected:
            self.request.unregisterProducer()
            self.request.finish()

    def gone(self) -> None:
        """The client went away."""
        self.disconnected = True
        self.discard()

    def discard(self) -> None:
        """End the stream before it started, without a word: the caller answers instead."""
        if not self.closed:
            self._end()

    # IPushProducer: the transport says when the client keeps up, and when not.

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._flush()

    def stopProducing(self) -> None:
        self.gone()

    def _flush(self) -> None:
        while self._pending and not self.paused and not self.closed:
            hit = self._pending.popleft()
            self._pending_bytes -= len(hit)
            self._write((b",\n" if self.sent else b"") + hit)
            self.sent += 1
            if self.limit is not None and self.sent >= self.limit:
                self.close()
        if self._behind is not None and not self._past_bounds():
            self._behind.cancel()  # caught up
            self._behind = None
        if self._drained:
            self._check_drained()

    def _idle(self) -> None:
        if not self.paused:
            self._write(b"\n")

    def _end(self) -> None:
        self.closed = True
        self._pending.clear()
        self._pending_bytes = 0
        self._holding, self._seen = None, {}
        if self._behind is not None:
            self._behind.cancel()
            self._behind = None
        if self._keepalive.running:
            self._keepalive.stop()
        self._on_end(self)
        self._check_drained()

    def _write(self, data: bytes) -> None:
        if not self.disconnected:
            self.request.write(data)


class Tailor:
    """The WAMP session shared by all streams, and the streams themselves.

    Tailor holds one subscription per topic and hands each event to that topic's streams
    itself: when one stream ends on its limit, the others on the topic still get the event.
    """

    def __init__(
        self,
        keepalive: float,
        max_pending: int = 1000,
        max_pending_bytes: int = 16 * 1024 * 1024,
        max_behind: float = 2.0,
    ):
        self.keepalive = keepalive
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.max_behind = max_behind
        self.session = None
        self.topics: dict[str, set[Stream]] = {}
        # What estrom.metrics reports: streams opened; hits sent by streams that ended; streams
        # dropped because their client fell behind, and the hits they held.
        self.opened = self.sent_by_ended = self.dropped = self.hits_dropped = 0
        self._subscriptions: dict[str, Any] = {}
        self._subscribing = Coalesce()  # by topic: never two subscriptions to one topic

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

    def on_join(self, session, details) -> None:
        self.session = session
        log.info("Tailor joined realm {realm}", realm=details.realm)

    def on_leave(self, session, details) -> None:
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
    ) -> None:
        session = self.session
        if session is None:
            return send_error(request, 503, "Tailor is not connected to the router", {"Retry-After": "1"})
        reader = principal_of(request)
        if index is not None and not reader.may_read(index):
            return send_error(request, 403, f"the token {reader.name!r} may not read the index {index!r}")
        finished = request.notifyFinish().addErrback(lambda _: None)  # fired: the client is gone
        try:
            if sid is None:
                sid = await session.call(api.REGISTER, index, query)
            else:
                found = await session.call(api.LOOKUP, sid)
                if not reader.may_read(found["index"]):
                    return send_error(
                        request, 403, f"the token {reader.name!r} may not read the index of this subscription"
                    )
        except ApplicationError as e:
            status = _STATUS.get(e.error, 503)
            return send_error(request, status, _message(e), {"Retry-After": "1"} if status == 503 else None)
        except TransportLost:
            return send_error(request, 503, "Tailor lost the router", {"Retry-After": "1"})
        if finished.called or self.session is not session:
            return
        topic = api.topic(sid)
        stream = Stream(
            request,
            topic,
            limit,
            self.keepalive,
            self.max_pending,
            self._ended,
            self.max_pending_bytes,
            self.max_behind,
        )
        stream.reader = reader.name
        if backlog:
            stream.hold()
        self.opened += 1
        self.topics.setdefault(topic, set()).add(stream)
        finished.addBoth(lambda _: stream.gone())
        try:
            if topic not in self._subscriptions:
                await self._subscribing.run(
                    topic, lambda: Deferred.fromCoroutine(self._subscribe(session, topic))
                )
        except (ApplicationError, TransportLost) as e:
            stream.discard()
            return send_error(request, 503, f"cannot subscribe: {e}", {"Retry-After": "1"})
        if stream.closed:  # the client may have gone, or the router, meanwhile
            return
        if not backlog:
            return stream.start(sid)
        await self._backlog(session, stream, sid, backlog)

    async def _backlog(self, session, stream: Stream, sid: str, options: dict[str, Any]) -> None:
        """Start ``stream`` with the stored hits ``options`` ask for, a page at a time as the
        client takes them, then go on live. Subscribed before the first page is asked for: the
        backlog and the live hits meet without a gap, and the live copies of backlog hits are
        skipped. Without a store, resuming (``after``) says ``"gap": true``."""
        request = stream.request
        try:
            answer = await _call(session, sid, options)
        except ApplicationError as e:
            if e.error == api.NO_STORE and set(options) == {"after"}:
                answer = {"hits": [], "next": None, "gap": True}
            else:
                stream.discard()
                status = _STATUS.get(e.error, 503)
                return send_error(
                    request, status, _message(e), {"Retry-After": "1"} if status == 503 else None
                )
        except (TransportLost, defer.TimeoutError, defer.CancelledError):
            stream.discard()
            return send_error(request, 503, "Beater did not give the backlog: retry", {"Retry-After": "1"})
        if stream.closed:
            return
        stream.start(sid, gap=bool(answer.get("gap")))
        while True:
            stream.send_backlog(answer.get("hits") or [])
            if not answer.get("next"):
                break
            await stream.drained()  # the client has read it: memory holds one page at a time
            if stream.closed:
                return
            try:
                answer = await _call(session, sid, {"page": answer["next"]})
            except Exception as e:  # noqa: BLE001 - the head is sent: end the JSON, saying why
                error = _message(e) if isinstance(e, ApplicationError) else type(e).__name__
                return stream.close(
                    error=f"the backlog could not be read whole: {error}; resume after the last hit"
                )
            if stream.closed:
                return
        stream.release()

    async def _subscribe(self, session, topic: str) -> None:
        subscription = await session.subscribe(lambda *hits: self._deliver(topic, hits), topic)
        if topic in self.topics and self.session is session:
            self._subscriptions[topic] = subscription
        else:  # every stream on it ended while the router answered, or the session is gone
            subscription.unsubscribe().addErrback(lambda _: None)

    def _deliver(self, topic: str, hits: tuple) -> None:
        streams = list(self.topics.get(topic, ()))
        if streams:
            encoded = [json.dumps(hit).encode("utf-8") for hit in hits]  # once, for every stream
            cursors = [hit.get("_cursor") if isinstance(hit, dict) else None for hit in hits]
            for stream in streams:
                stream.send(encoded, cursors)

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


def _call(session, sid: str, options: dict[str, Any]) -> Deferred:
    """``estrom.backlog``, given up after BACKLOG_CALL_SECONDS (a Beater that never answers
    must not leave a client waiting for its head while live hits pile up)."""
    return session.call(api.BACKLOG, sid, options).addTimeout(BACKLOG_CALL_SECONDS, reactor)


def _message(error: ApplicationError) -> str:
    return error.args[0] if error.args else error.error


class DocsResource(Resource):
    """``/api/v0.1/docs``."""

    isLeaf = True

    def __init__(self, tailor: Tailor):
        super().__init__()
        self.tailor = tailor

    def render(self, request: Request) -> bytes | int:
        return only(b"GET", request) or super().render(request)

    def render_GET(self, request: Request) -> int:
        try:
            index, query, sid, limit, backlog = _parameters(request)
        except ValueError as e:
            send_error(request, 400, str(e))
            return NOT_DONE_YET
        return answer_later(request, self.tailor.open(request, index, query, sid, limit, backlog), "stream")


def _parameters(request: Request) -> tuple[str | None, Any, str | None, int | None, dict[str, Any]]:
    """``(index, query, subscription id, limit, backlog options)`` from the URL; ValueError says
    what is wrong (Beater checks the backlog options further)."""
    args = {}
    for name, values in request.args.items():
        name = name.decode("utf-8", "replace")
        if len(values) > 1:
            raise ValueError(f"parameter '{name}' is given more than once")
        try:
            args[name] = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"parameter '{name}' is not UTF-8") from None
    unknown = set(args) - {"i", "q", "s", "limit", "backlog", "since", "after"}
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}; use i and q, or s")
    limit = _positive(args, "limit")
    backlog: dict[str, Any] = {}
    if "backlog" in args:
        backlog["last"] = _positive(args, "backlog")
    for name in ("since", "after"):
        if name in args:
            if not args[name].strip():
                raise ValueError(f"'{name}' is empty")
            backlog[name] = args[name]
    if "s" in args:
        if "i" in args or "q" in args:
            raise ValueError("give either 's', or 'i' and 'q', not both")
        if not args["s"]:
            raise ValueError("'s' is empty")
        return None, None, args["s"], limit, backlog
    if not args.get("i") or not args.get("q", "").strip():
        raise ValueError("give 'i' (the index) and 'q' (the query), or 's' (a subscription ID)")
    return args["i"], _query(args["q"]), None, limit, backlog


def _positive(args: dict[str, str], name: str) -> int | None:
    if name not in args:
        return None
    try:
        value = int(args[name])
    except ValueError:
        raise ValueError(f"'{name}' must be a positive integer") from None
    if value < 1:
        raise ValueError(f"'{name}' must be a positive integer")
    return value


def _query(text: str) -> Any:
    """A JSON object is query DSL; anything else is a Lucene query string."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except RecursionError:
            raise ValueError("'q' is nested too deeply") from None
        except ValueError:
            return text  # e.g. the range `{a TO b}`
        if isinstance(value, dict):
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    "'q' holds a lone UTF-16 surrogate (\\uD800-\\uDFFF), which is not text"
                ) from None
            return value
    return text
