"""Delivery: a batch percolated (and stored) in one engine request each, its hits published.

Readers of a query subscribe to its topic, ``docs-for-<ID>``, and get one event per batch that
matched it (or a few, split by size). A Tailor (role ``tailor``) reads the hits of every query
its streams follow: for the queries Beater knows a Tailor listens to, a batch's hits go to the
feed (api.FEED) once, with the IDs each one matched, and their per-query events exclude Tailors;
the router handles one event per batch for them, not one per matching query. Until Beater knows
who listens to a query (beater.interest), its per-query events reach everyone, Tailors too, and
it is not on the feed: a Tailor gets each hit once either way.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from itertools import accumulate

import cbor2
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import PublishOptions
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from beater.cursor import Cursors
from beater.documents import CBOR_PER_JSON_BYTE, new_ids
from beater.engine import EngineError, EngineUnavailable
from beater.interest import Interest
from beater.percolator import Matches, Percolator
from beater.pipeline import Misconfigured, UnreadableDocuments
from beater.presearch import Presearcher
from beater.store import Store
from estrom import api
from estrom.metrics import BeaterMetrics

log = Logger()

# One event carries the hits of one query in a batch (or the feed's hits of a batch), up to about
# this many bytes (as CBOR); more go in several events. The router takes at most 16 MiB in one
# message over RawSocket (and drops the connection that sends more), and each subscriber decodes
# an event whole.
EVENT_BYTES = 4 * 1024 * 1024

# By (acknowledged, Tailors excluded): a batch's last publication asks to be acknowledged.
_OPTIONS = {
    (acknowledge, exclude): PublishOptions(
        acknowledge=acknowledge or None, exclude_authrole=[api.TAILOR_ROLE] if exclude else None
    )
    for acknowledge in (False, True)
    for exclude in (False, True)
}


class RouterUnavailable(Exception):
    """Beater is not connected to the router, or a publication was not acknowledged."""


class Delivery:
    """Percolates, stores and publishes batches (the Pipeline's ``deliver``)."""

    def __init__(
        self,
        percolator: Percolator,
        interest: Interest | None,
        store: Store | None,
        cursors: Cursors,
        metrics: BeaterMetrics,
        presearch: Presearcher | None = None,
    ):
        self.percolator = percolator
        self.presearch = presearch  # None: every document of a batch is percolated
        if presearch is not None and percolator is not None:
            percolator.mappings.remapped = presearch.remapped
        self.interest = interest  # None: percolate every stored query; who listens is not known
        self.store = store  # None: documents are percolated and published, not kept
        self.cursors = cursors
        self.metrics = metrics
        self.session = None  # the joined WAMP session, or None
        # By index: the cursors of this Beater's batches taken and not yet published (or failed),
        # which a backlog leaves out.
        self._in_flight: dict[str, set[tuple[str, str]]] = {}
        # Per index, fired when the batch before the newest has sent its publications: batches
        # percolate side by side but publish in the order they were formed.
        self._turns: dict[str, Deferred] = {}

    async def deliver(
        self,
        index: str,
        documents: list[dict],
        requests: list[tuple[int, int]] | None = None,
        ids: list[str] | None = None,
        named: list[bool] | None = None,
    ) -> dict[str, list[int]]:
        """Percolate one batch in one engine request; publish one event per matching query (or
        several, for a query whose hits would make a larger one than EVENT_BYTES), and the feed's
        for Tailors (see the module). ``requests``:
        the (documents, bytes) of each request that carried them, in turn (None: unknown);
        ``ids``: the documents' (None: made here); ``named``: which of those their senders gave,
        for readers to know a resend (api.NAMED)."""
        if ids is None:
            ids = new_ids(len(documents))
        if self.session is None:
            raise RouterUnavailable("Beater is not connected to the router")
        before, mine = self._turns.get(index), Deferred()
        self._turns[index] = mine
        # Taken in the order batches publish: one Beater's hits of an index arrive by cursor.
        cursors = self.cursors.take(len(documents))
        batch = (cursors[0], cursors[-1]) if cursors else None
        if batch is not None:
            self._in_flight.setdefault(index, set()).add(batch)
        stored: list = []  # what the store wrote of this batch
        started = time.monotonic()
        try:
            try:
                only = self.interest.active() if self.interest is not None else None
                matches, stored = await self._percolate_and_store(index, documents, ids, cursors, only)
                percolated = time.monotonic() - started
                highlights = await self._highlights(index, documents, matches)
            except EngineError as e:
                if e.misconfiguration:
                    log.error(
                        "Beater: the search engine refuses to percolate {index} (a misconfiguration): {error}",
                        index=index,
                        error=e,
                    )
                    raise Misconfigured(f"the search engine refuses Beater: {e.reason}") from e
                # The store's bulk answer names the documents; a percolation's failure does not.
                raise UnreadableDocuments(e.reason, getattr(e, "refused", None)) from e
            finally:
                if before is not None:
                    await before
            session = self.session
            if session is None:
                raise RouterUnavailable("Beater is not connected to the router")
            hits = [
                {"_index": index, "_id": document_id, "_cursor": cursor, "_source": document}
                for document, document_id, cursor in zip(documents, ids, cursors, strict=True)
            ]
            for slot, given in enumerate(named or ()):
                if given:
                    hits[slot][api.NAMED] = True
            publications = self._publications(hits, matches, requests, highlights)
            # One session's messages reach the router, and each subscriber, in the order they
            # were sent, and crossbar handles each as it arrives: the acknowledgement of a
            # batch's last publication says the router took them all. One PUBLISHED per batch
            # instead of one per matching query.
            try:
                for number, (topic, event, matched, exclude) in enumerate(publications, 1):
                    options = _OPTIONS[number == len(publications), exclude]
                    if matched is None:
                        published = session.publish(topic, *event, options=options)
                    else:
                        published = session.publish(topic, *event, options=options, **{api.MATCHES: matched})
                acknowledged = published if publications else None
            except TransportLost as e:
                raise RouterUnavailable(f"publishing to the router failed: {e}") from e
            fed = sum(1 for topic, *_ in publications if topic == api.FEED)
            self.metrics.events.labels("topic").inc(len(publications) - fed)
            self.metrics.events.labels("feed").inc(fed)
        except Exception:
            # Not published whole (the router went away, or a publication failed: then earlier
            # events of the batch may be out): the sender hears it failed and may send it again,
            # so what the store has of it goes.
            if stored:
                await self.store.remove(index, stored, cursors)
            raise
        finally:
            if self._turns.get(index) is mine:
                del self._turns[index]
            mine.callback(None)
            # Published (or failed): a backlog from now on may hold it. A subscription the
            # router took after these publications finds them in the store, refreshed.
            if batch is not None:
                flying = self._in_flight[index]
                flying.discard(batch)
                if not flying:
                    del self._in_flight[index]
        if acknowledged is not None:
            try:
                await acknowledged
            except Exception as e:
                if stored:
                    await self.store.remove(index, stored, cursors)
                # The router went away, or refused the publication. Anything else is a bug, and
                # must not pass for "unavailable, retry" (senders retry forever).
                if isinstance(e, (TransportLost, ApplicationError)):
                    raise RouterUnavailable(f"publishing to the router failed: {e}") from e
                raise
        self.metrics.delivered(index, len(documents), sum(map(len, matches.values())), percolated)
        self.metrics.stages.labels("percolate").observe(percolated)
        self.metrics.stages.labels("publish").observe(time.monotonic() - started - percolated)
        return matches

    def _publications(
        self,
        hits: list[dict],
        matches: dict[str, list[int]],
        requests: list[tuple[int, int]] | None,
        highlights: dict[str, dict[int, dict[str, list[str]]]],
    ) -> list[tuple[str, list[dict], dict[str, list[int]] | None, bool]]:
        """A batch's publications, in turn: (topic, hits, the feed's matches or None, whether
        Tailors are excluded). A query on the feed has a per-query event only if someone else
        may listen to it; a query registered for highlights is never on it (its hits differ)."""
        fed: set[str] = set()
        others: set[str] = set()
        if self.interest is not None:
            marked = getattr(matches, "highlight", {})  # its hits differ, with highlights or without
            chosen = [query_id for query_id in matches if query_id not in marked]
            fed, others = self.interest.audience(chosen, getattr(matches, "recent", ()))
        if not fed:
            return [
                (api.topic(q), event, None, False)
                for q, event in _events(hits, matches, requests, highlights)
            ]
        per_query = {
            query_id: slots
            for query_id, slots in matches.items()
            if query_id not in fed or query_id in others
        }
        publications = [
            (api.topic(query_id), event, None, query_id in fed)
            for query_id, event in _events(hits, per_query, requests, highlights)
        ]
        publications.extend(
            (api.FEED, event, matched, False)
            for event, matched in _feed(hits, {query_id: matches[query_id] for query_id in fed}, requests)
        )
        return publications

    async def _highlights(
        self, index: str, documents: list[dict], matches: dict[str, list[int]]
    ) -> dict[str, dict[int, dict[str, list[str]]]]:
        """The engine's highlights for the matching queries registered for them. Without them
        (the engine fails to highlight) the hits go out as they are: nothing is held back."""
        if not getattr(matches, "highlight", None):
            return {}
        try:
            return await self.percolator.highlights(index, documents, matches)
        except (EngineError, EngineUnavailable) as e:
            log.warn(
                "Beater: the search engine did not highlight a batch of {index}: {error}",
                index=index,
                error=e,
            )
            return {}

    async def _percolate(self, index: str, documents: list[dict], only: list[str] | None) -> Matches:
        """The batch's matches, the documents that no listened-to query can match left out
        (beater.presearch): a percolation of its candidates alone."""
        chosen = None
        if self.presearch is not None and only is not None and len(only) <= self.percolator.max_filter_terms:
            chosen = self.presearch.candidates(index, documents, only)
        if chosen is None or len(chosen) == len(documents):
            return await self.percolator.percolate(index, documents, only)
        anchored = self.presearch.anchored(index, only)
        if await self.percolator.listened_elsewhere(index, anchored):
            return await self.percolator.percolate(index, documents, only)  # no anchor for that one
        self.metrics.not_percolated.inc(len(documents) - len(chosen))
        moved = Matches()
        if chosen:
            matches = await self.percolator.percolate(index, [documents[slot] for slot in chosen], only)
            moved.update((query_id, [chosen[slot] for slot in slots]) for query_id, slots in matches.items())
            moved.highlight, moved.recent = matches.highlight, matches.recent
        return moved

    async def _percolate_and_store(
        self, index: str, documents: list[dict], ids: list[str], cursors: list[str], only: list[str] | None
    ) -> tuple[dict[str, list[int]], list]:
        """Percolate a batch and, with the store, store it at the same time: the matches, and
        what was stored. If either fails, what was stored of it is removed again."""
        if self.store is None:
            return await self._percolate(index, documents, only), []
        fields = self.percolator.mappings.new_fields(index, documents)
        if fields:
            return await self._store_then_percolate(index, documents, ids, cursors, only, fields)
        percolating = Deferred.fromCoroutine(self._percolate(index, documents, only))
        storing = Deferred.fromCoroutine(self.store.put(index, documents, ids, cursors))
        (percolated, matches), (was_stored, storing) = await DeferredList(
            [percolating, storing], consumeErrors=True
        )
        if percolated and was_stored:
            return matches, storing
        await self.store.remove(index, storing if was_stored else _written(storing.value), cursors)
        # The percolation's failure says most, unless the store's names the documents refused.
        named = not was_stored and hasattr(storing.value, "refused")
        failure = storing if percolated or named else matches
        raise failure.value

    async def _store_then_percolate(
        self,
        index: str,
        documents: list[dict],
        ids: list[str],
        cursors: list[str],
        only: list[str] | None,
        fields: set[str],
    ) -> tuple[dict[str, list[int]], list]:
        """Store first when a batch brings fields new to its index: the engine maps them in the
        source index, and the percolator index follows before the batch is percolated (a query
        on a field its index did not map matches nothing)."""
        try:
            written = await self.store.put(index, documents, ids, cursors)
        except Exception as e:
            await self.store.remove(index, _written(e), cursors)
            raise
        try:
            try:
                await self.percolator.mappings.follow_stored(index, fields)
            except EngineError as e:  # not the sender's fault: the sweep will follow it later
                log.warn("Beater: cannot follow the mapping of {index}: {error}", index=index, error=e)
            return await self._percolate(index, documents, only), written
        except Exception:
            await self.store.remove(index, written, cursors)
            raise


def _written(error: BaseException) -> list | None:
    """What a failed ``Store.put`` wrote: [] if its request never reached the engine, None if
    it did but the engine's answer is not known (it may have written every document)."""
    written = getattr(error, "written", None)
    if written is not None:
        return written
    if isinstance(error, EngineUnavailable) and not error.sent:
        return []
    return None


def _events(
    hits: list[dict],
    matches: dict[str, list[int]],
    requests: list[tuple[int, int]] | None,
    highlights: dict[str, dict[int, dict[str, list[str]]]] | None = None,
) -> list[tuple[str, list[dict]]]:
    """The (query ID, hits) of each event: a query's hits in one, or, if that could come to
    more than EVENT_BYTES, in as few as hold at most that each (a larger hit alone).

    A request's bytes bound what its documents become as CBOR (CBOR_PER_JSON_BYTE times them),
    so only the hits of a query that matched in enough bytes of requests are measured. A query
    registered for highlights has them on its hits (api.HIGHLIGHT), measured with the hit."""
    if highlights:
        return _highlighted_events(hits, matches, requests, highlights)
    # "_index", "_id", "_cursor", "_source", "_named" and theirs (an _id a sender gave: up to 512 bytes)
    per_hit = 80 + len(hits[0]["_index"]) + max(len(hit["_id"]) for hit in hits) if hits else 0
    ends = list(accumulate(documents for documents, _ in requests or ()))

    def at_most(slots: list[int]) -> float:
        """The most bytes the hits at ``slots`` can come to as CBOR."""
        if not requests:
            return float("inf")
        carried = {bisect_right(ends, slot) for slot in slots}
        return sum(requests[r][1] for r in carried) * CBOR_PER_JSON_BYTE + len(slots) * per_hit

    batch = sum(size for _, size in requests or ()) * CBOR_PER_JSON_BYTE + len(hits) * per_hit
    if requests and batch <= EVENT_BYTES:  # no event can be larger than the whole batch
        return [(query_id, [hits[slot] for slot in slots]) for query_id, slots in matches.items()]
    events = []
    sizes: dict[int, int] = {}
    for query_id, slots in matches.items():
        if len(slots) == 1 or at_most(slots) <= EVENT_BYTES:
            events.append((query_id, [hits[slot] for slot in slots]))
            continue
        event: list[dict] = []
        size = 0
        for slot in slots:
            if slot not in sizes:
                sizes[slot] = len(cbor2.dumps(hits[slot]))
            if event and size + sizes[slot] > EVENT_BYTES:
                events.append((query_id, event))
                event, size = [], 0
            event.append(hits[slot])
            size += sizes[slot]
        events.append((query_id, event))
    return events


def _feed(
    hits: list[dict], matches: dict[str, list[int]], requests: list[tuple[int, int]] | None
) -> list[tuple[list[dict], dict[str, list[int]]]]:
    """The feed's events of a batch: each hit that ``matches`` (by query ID) once, with
    ``{query_id: [positions among the event's hits]}``; as few as hold at most EVENT_BYTES each
    (a larger hit alone), the hits in the batch's order."""
    slots = sorted({slot for positions in matches.values() for slot in positions})
    events = []
    start = 0
    for _, chosen in _events(hits, {"": slots}, requests):
        where = {slot: n for n, slot in enumerate(slots[start : start + len(chosen)])}
        start += len(chosen)
        matched = {}
        for query_id, positions in matches.items():
            mine = [where[slot] for slot in positions if slot in where]
            if mine:
                matched[query_id] = mine
        events.append((chosen, matched))
    return events


def _highlighted_events(
    hits: list[dict],
    matches: dict[str, list[int]],
    requests: list[tuple[int, int]] | None,
    highlights: dict[str, dict[int, dict[str, list[str]]]],
) -> list[tuple[str, list[dict]]]:
    """_events, the queries registered for highlights with them on their hits: as large as the
    hit again at most (whole values), so their events are measured hit by hit."""
    plain = {query_id: slots for query_id, slots in matches.items() if query_id not in highlights}
    events = _events(hits, plain, requests)
    for query_id, marks in highlights.items():
        event: list[dict] = []
        size = 0
        for slot in matches.get(query_id, ()):
            hit = {**hits[slot], api.HIGHLIGHT: marks[slot]} if slot in marks else hits[slot]
            measured = len(cbor2.dumps(hit))
            if event and size + measured > EVENT_BYTES:
                events.append((query_id, event))
                event, size = [], 0
            event.append(hit)
            size += measured
        if event:
            events.append((query_id, event))
    return events
