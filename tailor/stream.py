"""One client's endless response: ``{"subscription_id": "<ID>", "hits": [ ... ]}``.

The array grows as matching documents arrive, so that a streaming parser (``ijson.items(body,
"hits.item")``) yields each hit at once. The head is sent only once the subscription is in place
(tailor.service): nothing published after it can be missed. The object is closed (``]}``) after
``limit`` hits, when Tailor shuts down, or when Tailor loses the router (then with an
``"error"``), so the body is valid JSON whenever it ends.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from estrom.cursor import node_of
from estrom.http import ByteBudget, send_error
from tailor.aggregate import Aggregation

log = Logger()

_encode = msgspec.json.Encoder().encode


def encode_hit(hit: Any) -> bytes:
    """A hit as a line of a stream: JSON, written by msgspec (0.1-0.4 µs a hit instead of the
    standard library's 2-5: Tailor writes every hit of its streams). What it cannot write as
    UTF-8 (a lone surrogate, which Beater refuses to take in) the standard library escapes."""
    try:
        return _encode(hit)
    except (UnicodeEncodeError, TypeError):
        return json.dumps(hit).encode("utf-8")


@dataclass(frozen=True)
class Bounds:
    """How far behind its hits a client may fall (see Stream)."""

    hits: int = 1000
    bytes: int = 16 * 1024 * 1024
    seconds: float = 2.0  # past those, before the stream ends


DEFAULT_BOUNDS = Bounds()


@implementer(IPushProducer)
class Stream:
    ARRAY = b"hits"  # the name of the array that grows

    """One client's endless response.

    A push producer: when the client reads slower than hits arrive, the transport pauses it and
    hits wait here. A client that stays further behind than ``bounds.hits`` hits or
    ``bounds.bytes`` bytes for ``bounds.seconds`` is closed with a valid end that says
    how many hits it missed (``], "dropped": N}``). The seconds are for bursts: events that arrive
    back to back reach a client that keeps up before the transport could write a byte of them.
    Past twice the bytes the stream ends at once: memory stays bounded, whatever the documents.

    What every stream keeps waiting is held in ``budget`` too (Tailor's, shared by all its
    streams: ESTROM_MAX_PENDING_TOTAL_BYTES): when hits would take it past its limit, the stream
    that keeps the most ends at once, the same way (the furthest behind, not the one a burst
    just reached), whatever its own bounds.
    """

    def __init__(
        self,
        request: Request,
        topic: str,
        limit: int | None,
        keepalive: float,
        on_end: Callable[[Stream], None],
        bounds: Bounds = DEFAULT_BOUNDS,
        clock: IReactorTime = reactor,
        budget: ByteBudget | None = None,
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
        self._bounds = bounds
        self._budget = budget
        self._counted = 0  # of what this stream keeps, the bytes held in the budget
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
            b'{"subscription_id": %s, %s"%s": [\n'
            % (json.dumps(subscription_id).encode(), b'"gap": true, ' if gap else b"", self.ARRAY)
        )
        self._keepalive.start(self._keepalive_seconds, now=False)

    def hold(self) -> None:
        """Keep live hits back until ``release``: a backlog goes first."""
        self._holding = []

    def send_backlog(self, hits: list[dict]) -> None:
        """Write hits of the backlog (oldest first); their live copies will be skipped."""
        for hit in hits:
            cursor = hit.get("_cursor")
            node = node_of(cursor)
            if node is not None:
                self._seen.setdefault(node, deque()).append(cursor)
        self._send([encode_hit(hit) for hit in hits])

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
            self._holding.extend(zip(cursors or [None] * len(hits), hits, strict=True))
            self._held_bytes += sum(len(hit) for hit in hits)
            if self._held_bytes > 2 * self._bounds.bytes or not self._recount():  # memory stays bounded
                self._pending.extend(hit for _, hit in self._holding)
                self._holding = None
                self.drop()
            return
        if self._seen and cursors is not None:
            hits = [hit for hit, cursor in zip(hits, cursors, strict=True) if not self._in_backlog(cursor)]
        self._send(hits)

    def _in_backlog(self, cursor: str | None) -> bool:
        node = node_of(cursor)
        cursors = self._seen.get(node) if node is not None else None
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
        if self.closed:
            return
        if not self._recount():
            self.drop(over_budget=True)
            return
        if not self._past_bounds():
            return
        if self._pending_bytes > 2 * self._bounds.bytes:
            self.drop()
            return
        if self._behind is None:
            self._behind = self._clock.callLater(self._bounds.seconds, self.drop)

    def _past_bounds(self) -> bool:
        return len(self._pending) > self._bounds.hits or self._pending_bytes > self._bounds.bytes

    dropped: int | None = None  # hits dropped with the stream, if the client fell behind
    _closing: str | None = None  # the error to end with once what is kept is written
    reader: str | None = None  # the name of the token the client showed
    since: int = 0  # the first of Tailor's deliveries this stream is open for (tailor.resends)
    after: str | None = None  # the cursor the client resumed after

    def _recount(self) -> bool:
        """Hold in the budget what this stream keeps now, ending the streams that keep the most
        while that would take it past its limit; False if this stream is the one to end."""
        if self._budget is None:
            return True
        keeps = self._pending_bytes + self._held_bytes
        if keeps > self._counted:
            while not self._budget.take(keeps - self._counted, self):
                furthest, kept = self._budget.largest()
                if furthest is None or furthest is self or kept <= keeps:
                    return False  # this one would keep the most
                furthest.drop(over_budget=True)  # gives back what it kept
        elif keeps < self._counted:
            self._budget.give(self._counted - keeps, self)
        self._counted = keeps
        return True

    def drop(self, over_budget: bool = False) -> None:
        """End the stream as one whose client fell too far behind, with the count of its hits
        it did not get."""
        self._behind = None
        self.dropped = len(self._pending)
        log.info(
            "Tailor: a client on {topic} fell too far behind: {dropped} hits dropped, stream ended{why}",
            topic=self.topic,
            dropped=len(self._pending),
            why=" (Tailor holds ESTROM_MAX_PENDING_TOTAL_BYTES for its slow clients)" if over_budget else "",
        )
        self.close(dropped=len(self._pending))

    def close(self, error: str | None = None, dropped: int = 0) -> None:
        """End the JSON object and the response."""
        if self.closed:
            return
        if not self.started:  # nothing sent yet: an ordinary error answer
            self._end()
            send_error(self.request, 503, error or "Tailor is shutting down", {"Retry-After": "1"})
            return
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

    def close_when_sent(self, error: str) -> None:
        """End the stream with ``error`` once the hits it keeps for its client are written (no
        hit follows them: its query was taken out of percolation)."""
        self._closing = error
        self._flush()

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
        if self._budget is not None and self._pending_bytes + self._held_bytes < self._counted:
            self._recount()  # gives back what was written; what was added is _send's to count
        if self._behind is not None and not self._past_bounds():
            self._behind.cancel()  # caught up
            self._behind = None
        if self._closing is not None and not self._pending and self._holding is None and not self.closed:
            self.close(error=self._closing)
        if self._drained:
            self._check_drained()

    def _idle(self) -> None:
        if not self.paused:
            self._write(b"\n")

    def _end(self) -> None:
        self.closed = True
        self._pending.clear()
        self._pending_bytes = self._held_bytes = 0
        self._recount()
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


# Hits an aggregation stream keeps back while Beater counts the stored ones, at most.
MAX_WAITING_HITS = 200_000


class FrameStream(Stream):
    """One client's endless aggregation (``/api/v0.1/aggs``): ``{"subscription_id": "<ID>",
    "frames": [ ... ]}``, a frame of ``aggregation`` every ``every`` seconds. A client that reads
    slower than frames come gets the newest: one frame waits for it at most.

    In a ``group`` (streams of one topic asking for the same rolling window), the aggregation
    and each frame are the group's: the stream adds its own ``count`` (since it opened) and
    ``rate``."""

    ARRAY = b"frames"

    def __init__(
        self,
        *args: Any,
        aggregation: Aggregation,
        every: float,
        group: FrameGroup | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.aggregation = aggregation
        self.group = group
        self._every = every
        self._framing = LoopingCall(self.send_frame)
        self._framing.clock = self._clock
        self._base = aggregation.count  # what the aggregation had counted before this stream opened
        self._last = (aggregation.count, self._clock.seconds())  # the count, and when, at the last frame
        self._waiting: list[tuple[tuple, float]] | None = None  # hits kept back for a backfill
        self._waiting_hits = 0

    def start(self, subscription_id: str, gap: bool = False) -> None:
        super().start(subscription_id, gap)
        if self.group is not None:
            self.group.join(self)
        else:
            self._framing.start(self._every, now=False)

    def add(self, hits: tuple, now: float) -> None:
        if self.closed:
            return
        if self._waiting is not None:  # for the backfill: counted after it
            self._waiting.append((hits, now))
            self._waiting_hits += len(hits)
            if self._waiting_hits > MAX_WAITING_HITS:
                self.close(error="too many hits arrived while the stored ones were counted: open it again")
            return
        self.aggregation.add(hits, now)

    def hold(self) -> None:
        """Keep live hits back until ``backfill``."""
        self._waiting, self._waiting_hits = [], 0

    def backfill(self, summary: dict[str, Any]) -> None:
        """Start from Beater's summary of the stored matches, then count the hits kept back (those
        the summary does not hold), and go on live."""
        self.aggregation.backfill(summary)
        self._last = (self.aggregation.count, self._last[1])  # the rate is of live hits
        waiting, self._waiting = self._waiting or [], None
        for hits, now in waiting:
            self.aggregation.add(hits, now)

    def send_frame(self) -> None:
        if self.closed:
            return
        now = self._clock.seconds()
        frame = self.aggregation.frame(now, self._rate(now))
        frame["count"] -= self._base
        self._push(json.dumps(frame).encode("utf-8"))

    def send_shared(self, now: float, head: dict[str, Any], rest: bytes) -> None:
        """Write the group's frame at ``now``: its ``head`` (``at``, ``cursor``) with this
        stream's count and rate, then the ``rest`` (JSON of an object, as the group encoded it)."""
        if self.closed:
            return
        own = {**head, "count": self.aggregation.count - self._base, "rate": self._rate(now)}
        self._push(json.dumps(own).encode("utf-8")[:-1] + b", " + rest[1:])

    def _rate(self, now: float) -> float:
        """Hits a second since the last frame."""
        count, at = self._last
        self._last = (self.aggregation.count, now)
        return round((self.aggregation.count - count) / (now - at), 3) if now > at else 0.0

    def _push(self, frame: bytes) -> None:
        if self.paused:  # only the newest frame waits for a slow client
            self._pending.clear()
            self._pending_bytes = 0
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        self._flush()

    def _end(self) -> None:
        if self._framing.running:
            self._framing.stop()
        if self.group is not None:
            self.group.leave(self)
        super()._end()


class FrameGroup:
    """The aggregation streams of one topic that ask for the same rolling window and frame
    interval: one aggregation counts the topic's hits for all of them, and one frame is made
    for them all every ``every`` seconds. 1,000 readers of one query cost what one does."""

    def __init__(self, aggregation: Aggregation, every: float, clock: IReactorTime = reactor):
        self.aggregation = aggregation
        self.streams: set[FrameStream] = set()
        self.since = 0  # the first delivery it counts (tailor.resends): set by Tailor
        self.after: str | None = None
        self._clock = clock
        self._framing = LoopingCall(self.send_frame)
        self._framing.clock = clock
        self._every = every
        self.ended: Callable[[FrameGroup], None] = lambda group: None

    def join(self, stream: FrameStream) -> None:
        self.streams.add(stream)
        if not self._framing.running:
            self._framing.start(self._every, now=False)

    def leave(self, stream: FrameStream) -> None:
        self.streams.discard(stream)
        if not self.streams:
            if self._framing.running:
                self._framing.stop()
            self.ended(self)

    def send_frame(self) -> None:
        now = self._clock.seconds()
        frame = self.aggregation.frame(now, 0.0)
        head = {"at": frame.pop("at"), "cursor": frame.pop("cursor")}
        del frame["count"], frame["rate"]
        rest = json.dumps(frame).encode("utf-8")
        for stream in list(self.streams):
            stream.send_shared(now, head, rest)
