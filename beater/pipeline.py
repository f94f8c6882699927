"""Micro-batching: the documents of concurrent ingest requests, gathered into one percolation.

Group commit: a request goes to the engine at once when fewer than ``in_flight`` percolations
are running; while they all run, new requests for an index gather, and go together (up to
``max_docs`` documents) as soon as one ends. So a lone sender waits for nothing but its own
percolation, and batches grow with the load. A ``max_wait`` above 0 also holds a batch that
long for companions even when the engine is idle (fewer, larger batches at low load).

A request is answered once its documents are percolated and published. If the engine cannot read
some documents of a batch, the others go again without them: those the engine named (the item
statuses of the store's bulk answer), or else found by delivering each request alone, then the
documents of one that fails alone half by half (a percolation fails whole). A
request is taken whole or not at all, unless it is taken document by document (``Received.each``:
the bulk API, OTLP), when the documents the engine refused are refused alone.

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
    """The engine cannot read these documents (the sender's fault: do not retry as is).

    ``refused``: why the engine refused each document it named, by position in what was
    delivered (the item statuses of its bulk answer); None when it did not say which (a
    percolation fails whole)."""

    def __init__(self, reason: str, refused: dict[int, str] | None = None):
        super().__init__(reason)
        self.refused = refused


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
    # Taken document by document, as the engine's bulk API takes them: a document the engine
    # refuses is refused alone (Counts.refused). Else the request is taken whole or not at all.
    each: bool = False


class Counts(dict):
    """What became of one request's documents: ``{"accepted", "matched", "published"}``; for a
    request taken document by document, ``refused``: why each of those not taken was not, by
    position (UnreadableDocuments, Misconfigured, or what made the engine or router unavailable)."""

    def __init__(self) -> None:
        super().__init__(accepted=0, matched=0, published=0)
        self.refused: dict[int, Exception] = {}


@dataclass
class _Request:
    documents: list[dict]
    size: int
    ids: list[str]
    named: list[bool]
    each: bool
    done: Deferred = field(default_factory=Deferred)
    counts: Counts = field(default_factory=Counts)
    left: int = 0  # units not delivered or refused yet


@dataclass
class _Unit:
    """What is taken or refused together: a request's documents, or one document of a request
    taken document by document (``positions``: in its request)."""

    request: _Request
    positions: list[int]


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

    def submit(self, received: Received) -> Deferred[Counts]:
        """Queue the documents ``received``; fires with their Counts once percolated and
        published.

        Raises Overloaded at once when the queue is full. Taken whole or not at all, the Deferred
        fails with UnreadableDocuments, or with whatever ``deliver`` raised for its batch (engine
        or router unavailable); taken document by document, it fires, and ``Counts.refused``
        says why each document not taken was not.
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
            received.each,
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
        units = []
        for request in batch:
            count = len(request.documents)
            alone = request.each and count > 0  # an empty request is one unit: answered too
            units += (
                [_Unit(request, [p]) for p in range(count)] if alone else [_Unit(request, [*range(count)])]
            )
            request.left = count if alone else 1
        await self._deliver_units(index, units, [BISECTIONS])

    async def _deliver_units(self, index: str, units: list[_Unit], budget: list[int]) -> None:
        """Deliver ``units`` together. If the engine cannot read some of their documents, deliver
        again without them: those it named (its item statuses); or else each request alone, then
        the units of a request that fails alone half by half. Each delivery of a request's halves,
        or of what the engine did not name, takes one from ``budget``; when it is spent, what is
        left of a failing request is refused whole, saying so."""
        documents, ids, named, owners, places, carried = [], [], [], [], [], []
        for number, unit in enumerate(units):
            request = unit.request
            for position in unit.positions:
                documents.append(request.documents[position])
                ids.append(request.ids[position])
                named.append(request.named[position])
                owners.append(number)
                places.append(position)
            if carried and number and units[number - 1].request is request:
                carried[-1] = (carried[-1][0] + len(unit.positions), request.size)
            else:  # the whole request's bytes: events are measured by what carried them, at most
                carried.append((len(unit.positions), request.size))
        try:
            matches = await self._deliver(index, documents, carried, ids, named)
        except UnreadableDocuments as e:
            await self._isolate(index, units, list(zip(owners, places, strict=True)), e, budget)
            return
        except Exception as e:  # noqa: BLE001 - whatever failed, every waiting request must hear of it
            for unit in units:
                _refuse(unit, e)
            return
        # Each unit's share of the matches, in one pass over them: by slot, the unit that carried it.
        matched, published = [0] * len(units), [0] * len(units)
        seen: set[int] = set()
        for slots in matches.values():
            for slot in slots:
                published[owners[slot]] += 1
                if slot not in seen:
                    seen.add(slot)
                    matched[owners[slot]] += 1
        for number, unit in enumerate(units):
            counts = unit.request.counts
            counts["accepted"] += len(unit.positions)
            counts["matched"] += matched[number]
            counts["published"] += published[number]
            _unit_done(unit.request)

    async def _isolate(
        self,
        index: str,
        units: list[_Unit],
        places: list[tuple[int, int]],
        error: UnreadableDocuments,
        budget: list[int],
    ) -> None:
        """After the engine could not read what ``units`` carried (``places``: the unit of each
        document delivered, and its position in its request), refuse the units it named; else
        deliver each request alone, and the units of one request by halves."""
        named: dict[int, str] = {}
        for slot, why in sorted((error.refused or {}).items()):
            if 0 <= slot < len(places):
                number, position = places[slot]
                each = units[number].request.each
                named.setdefault(number, why if each else f"document {position}: {why}")
        for number, why in named.items():
            _refuse(units[number], UnreadableDocuments(why))
        rest = [unit for number, unit in enumerate(units) if number not in named]
        if not rest:
            return
        if named and budget[0] > 0:  # the engine said which: the others go again, together
            budget[0] -= 1
            await self._deliver_units(index, rest, budget)
            return
        # One sender's bad document must not cost the others: each request alone first, each
        # with a budget of its own, so that many bad documents of one cannot spend theirs.
        requests: dict[int, list[_Unit]] = {}
        for unit in rest:
            requests.setdefault(id(unit.request), []).append(unit)
        if len(requests) > 1:
            for alone in requests.values():
                await self._deliver_units(index, alone, [BISECTIONS])
            return
        if len(rest) == 1 and not named:
            _refuse(rest[0], error)
            return
        if budget[0] <= 0:
            count = sum(len(unit.positions) for unit in rest)
            refused = UnreadableDocuments(
                f"one of these {count} documents, too many refused in one request to tell which: {error}"
            )
            for unit in rest:
                _refuse(unit, refused)
            return
        budget[0] -= 1
        half = len(rest) // 2
        for part in (rest[:half], rest[half:]):
            await self._deliver_units(index, part, budget)


# Deliveries one request may spend, once alone, finding which of its documents the engine refuses
# (a body of 10,000 documents all refused costs the engine about twice this many at most).
BISECTIONS = 64


def _refuse(unit: _Unit, error: Exception) -> None:
    request = unit.request
    if request.each:
        for position in unit.positions:
            request.counts.refused[position] = error
        _unit_done(request)
    elif not request.done.called:
        request.done.errback(error)


def _unit_done(request: _Request) -> None:
    request.left -= 1
    if request.left == 0 and not request.done.called:
        request.done.callback(request.counts)
