"""Resends a reader already has: a document its sender named, sent again.

A sender that did not hear the answer to a request that was published (Beater killed while
answering, the router gone before it acknowledged) sends it again, and that copy is published
too, with a new cursor. When the sender named its documents (a ``_bulk`` action's ``_id``; their
hits say ``"_named": true``), a reader can tell the copy from a new document: Tailor remembers,
by topic, the named IDs it handed on in the last HORIZON seconds (at most MOST of them), and when
one comes again under another cursor, a stream that had the first copy is not given the second.

A stream had it if it was open when Tailor handed the first copy on, or if it resumed after a
cursor at least the first copy's (the client says it has every hit up to there). A stream opened
since, that resumed before it, gets the copy: it never had the document. The store keeps a named
document's latest copy (the sender's ``_id`` is its ``_id`` there), so a backlog holds it once,
and its hits go through the same check.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.internet import reactor
from twisted.internet.interfaces import IReactorTime

from estrom import api

HORIZON = 300.0  # seconds: shippers resend with backoff up to a minute (Logstash, Filebeat)
MOST = 100_000  # named IDs remembered in all (about 40 MiB); the oldest are forgotten first


class Reader(Protocol):
    since: int  # the first delivery the stream was open for
    after: str | None  # the cursor it resumed after


class Resends:
    def __init__(self, horizon: float = HORIZON, most: int = MOST, clock: IReactorTime = reactor):
        self.horizon = horizon
        self.most = most
        self._clock = clock
        self.deliveries = 0  # events handed on so far
        self.dropped = 0  # copies not given to a stream that had the document
        # topic -> named ID -> (its first cursor, the delivery that handed it on)
        self._first: dict[str, dict[str, tuple[str, int]]] = {}
        self._order: deque[tuple[float, str, str]] = deque()  # (when, topic, ID), oldest first

    def __len__(self) -> int:
        return len(self._order)

    def deliver(self, topic: str, hits: tuple | list) -> tuple[int, dict[int, tuple[str, int]]]:
        """Count a delivery of ``hits`` on ``topic`` and remember its named hits; the delivery's
        number, and the slots of hits that are copies of a named document handed on before
        (with that first cursor and delivery)."""
        self.deliveries += 1
        now = self._clock.seconds()
        self._forget(now)
        first = self._first.get(topic)
        copies: dict[int, tuple[str, int]] = {}
        for slot, hit in enumerate(hits):
            if not isinstance(hit, dict):
                continue
            document_id, cursor = hit.get("_id"), hit.get("_cursor")
            if not isinstance(document_id, str) or not isinstance(cursor, str):
                continue
            known = first.get(document_id) if first else None
            if known is not None:
                if known[0] != cursor:
                    copies[slot] = known
            elif hit.get(api.NAMED) is True:
                if first is None:
                    first = self._first[topic] = {}
                first[document_id] = (cursor, self.deliveries)
                self._order.append((now, topic, document_id))
        if len(self._order) > self.most:
            self._forget(now)
        return self.deliveries, copies

    def copies(self, topic: str, hits: list[dict]) -> dict[int, tuple[str, int]]:
        """The slots of backlog ``hits`` that are copies of a named document handed on live."""
        first = self._first.get(topic)
        if not first:
            return {}
        copies = {}
        for slot, hit in enumerate(hits):
            known = first.get(hit.get("_id")) if isinstance(hit, dict) else None
            if known is not None and known[0] != hit.get("_cursor"):
                copies[slot] = known
        return copies

    def keep(self, stream: Reader, copies: dict[int, tuple[str, int]], count: int) -> list[int] | None:
        """The slots of ``count`` hits ``stream`` is to get (None: all of them)."""
        if not copies:
            return None
        had = [slot for slot, known in copies.items() if had_it(stream, *known)]
        if not had:
            return None
        self.dropped += len(had)
        skip = set(had)
        return [slot for slot in range(count) if slot not in skip]

    def _forget(self, now: float) -> None:
        order = self._order
        while order and (order[0][0] < now - self.horizon or len(order) > self.most):
            _, topic, document_id = order.popleft()
            first = self._first.get(topic)
            if first is not None:
                first.pop(document_id, None)
                if not first:
                    del self._first[topic]


def had_it(stream: Reader, cursor: str, delivery: int) -> bool:
    """Whether ``stream`` had the hit that ``delivery`` handed on with ``cursor``."""
    return stream.since <= delivery or (stream.after is not None and cursor <= stream.after)
