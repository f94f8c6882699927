"""Micro-batching: the documents of concurrent ingest requests, gathered into one percolation.

Group commit: a request goes to the engine at once when fewer than ``in_flight`` percolations
are running; while they all run, new requests for an index gather, and go together (up to
``max_docs`` documents) as soon as one ends. So a lone sender waits for nothing but its own
percolation, and batches grow with the load. A ``max_wait`` above 0 also holds a batch that
long for companions even when the engine is idle (fewer, larger batches at low load). A request is never split: its documents
are percolated in one engine request, and it is answered once they are percolated and published.
In front of the engine at most ``max_queued`` documents, and ``max_queued_bytes`` bytes of the
requests that carried them, wait; past that, ``submit`` refuses at once (Beater answers 429), so
memory stays flat under overload, whether the documents are many and tiny or few and large.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from beater.documents import new_ids

# index, documents, (documents, bytes) of each request that carried them in turn, the
# documents' IDs, which of those their senders gave -> {query_id: [positions of the matching
# documents]}, once published
Deliver = Callable[
    [str, list[dict], list[tuple[int, int]], list[str], list[bool]], Awaitable[dict[str, list[int]]]
]


class Overloaded(Exception):
    """Too many documents are waiting for the engine: the sender should retry later."""


class UnreadableDocuments(Exception):
    """The engine cannot read these documents (the sender's fault: do not retry as is)."""


class Misconfigured(Exception):
    """The engine refuses Beater because of how estrom or the engine is set up (a closed index, a
    security plugin): no sender's fault, and a retry will not mend it until someone does."""


@dataclass(frozen=True)
class Received:
    """The documents one request sent to one index, as they are queued: ``size``, the bytes of
    the request that carried them; ``ids``, theirs (made when queued if not given); ``named``,
    which of those the sender gave."""

    index: str
    documents: list[dict]
    size: int = 0
    ids: list[str] | None = None
    named: list[bool] | None = None


@dataclass
class _Request:
    documents: list[dict]
    size: int
    ids: list[str]
    named: list[bool]
    done: Deferred = field(default_factory=Deferred)


@dataclass
class _Index:
    waiting: list[_Request] = field(default_factory=list)
    documents: int = 0
    timer: IDelayedCall | None = None


class Pipeline:
    def __init__(
        self,
        deliver: Deliver,
        max_docs: int = 1000,
        max_wait: float = 0.0,
        max_queued: int = 50_000,
        max_queued_bytes: int = 64 * 1024 * 1024,
        in_flight: int = 2,
        clock: IReactorTime = default_reactor,
    ):
        self._deliver = deliver
        self.max_docs = max_docs
        self.max_wait = max_wait
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.in_flight = in_flight
        self._clock = clock
        self._indexes: dict[str, _Index] = {}
        self._running = 0
        self.queued = 0  # documents waiting, not yet sent to the engine
        self.queued_bytes = 0  # the size of the requests that carried them

    def submit(self, received: Received) -> Deferred[dict[str, int]]:
        """Queue the documents ``received``; fires with their counts once percolated and
        published.

        Raises Overloaded at once when the queue is full. The Deferred fails with UnreadableDocuments, or
        with whatever ``deliver`` raised for a batch (engine or router unavailable).
        """
        index, documents, size = received.index, received.documents, received.size
        if self.queued > 0 and (
            self.queued + len(documents) > self.max_queued or self.queued_bytes + size > self.max_queued_bytes
        ):
            raise Overloaded(
                f"{self.queued} documents ({self.queued_bytes} bytes) are waiting for the search engine"
            )
        request = _Request(
            documents,
            size,
            received.ids or new_ids(len(documents)),
            received.named or [False] * len(documents),
        )
        state = self._indexes.setdefault(index, _Index())
        state.waiting.append(request)
        state.documents += len(documents)
        self.queued += len(documents)
        self.queued_bytes += size
        if state.documents >= self.max_docs or self.max_wait <= 0:
            self._flush(index)  # at once if a percolation may start; else when one ends
        elif state.timer is None:
            state.timer = self._clock.callLater(self.max_wait, self._due, index)
        return request.done

    def _due(self, index: str) -> None:
        self._indexes[index].timer = None
        self._flush(index)

    def _flush(self, index: str) -> None:
        if self._running >= self.in_flight:
            return  # _finished flushes again; meanwhile the batch grows
        state = self._indexes[index]
        if state.timer is not None and state.timer.active():
            state.timer.cancel()
        state.timer = None
        batch, size = [], 0
        while state.waiting and (not batch or size + len(state.waiting[0].documents) <= self.max_docs):
            request = state.waiting.pop(0)
            batch.append(request)
            size += len(request.documents)
            self.queued_bytes -= request.size
        state.documents -= size
        self.queued -= size
        if not state.waiting:
            del self._indexes[index]
        if batch:
            self._running += 1
            Deferred.fromCoroutine(self._run(index, batch)).addBoth(self._finished)

    def _finished(self, _: object) -> None:
        self._running -= 1
        # The fullest index first: that is where documents have waited to be a batch.
        for index in sorted(self._indexes, key=lambda name: -self._indexes[name].documents):
            state = self._indexes[index]
            if state.documents >= self.max_docs or state.timer is None:
                self._flush(index)
            if self._running >= self.in_flight:
                return

    async def _run(self, index: str, batch: list[_Request]) -> None:
        documents = [document for request in batch for document in request.documents]
        ids = [document_id for request in batch for document_id in request.ids]
        named = [given for request in batch for given in request.named]
        try:
            matches = await self._deliver(
                index, documents, [(len(request.documents), request.size) for request in batch], ids, named
            )
        except UnreadableDocuments:
            if len(batch) == 1:
                batch[0].done.errback()
                return
            # One sender's bad document must not fail the others: each request on its own.
            for request in batch:
                await self._run(index, [request])
            return
        except Exception:  # noqa: BLE001 - whatever failed, every waiting request must hear of it
            for request in batch:
                request.done.errback()
            return
        # Each request's share of the matches, in one pass over them: by slot, the request that
        # carried it.
        owner = [number for number, request in enumerate(batch) for _ in request.documents]
        matched, published = [0] * len(batch), [0] * len(batch)
        seen: set[int] = set()
        for slots in matches.values():
            for slot in slots:
                published[owner[slot]] += 1
                if slot not in seen:
                    seen.add(slot)
                    matched[owner[slot]] += 1
        for number, request in enumerate(batch):
            request.done.callback(
                {
                    "accepted": len(request.documents),
                    "matched": matched[number],
                    "published": published[number],
                }
            )
