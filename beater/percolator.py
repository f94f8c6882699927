"""Where documents are matched: percolating them against the queries stored in the search
engine's percolator indexes (beater.indexes names them; beater.mapping makes them and keeps their
mappings in step; beater.sweep removes the queries nobody uses).

A stored query the engine cannot run when percolating fails every percolation of its index: it is
found and taken out of percolation, and a lookup says why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from beater.engine import Engine, EngineError, EngineUnavailable, encode, path
from beater.fields import with_default_fields
from beater.identity import Identified
from beater.indexes import (
    ALL_FIELD,
    HIGHLIGHT_FIELD,
    ID_FIELD,
    META_FIELD,
    PREFIX,
    QUERY_FIELD,
    SEEN_FIELD,
    TAKEN_OUT_FIELD,
    percolator_index,
)
from beater.mapping import TAKEN_OUT_MAPPING, Made, Mappings
from beater.sweep import Sweep
from beater.validation import InvalidQuery

log = Logger()

# Asked of the engine's highlighter: whole values (no fragments), HTML-escaped with <em> marks,
# so that a reader can tell the marks from the document's own text.
HIGHLIGHT = {"encoder": "html", "number_of_fragments": 0, "pre_tags": ["<em>"], "post_tags": ["</em>"]}

_RECOVERING_RETRIES = 50  # 0.1 s apart
# Percolations of one batch spent finding the stored queries the engine cannot run (each
# such query costs about twice the logarithm of the index's count of queries).
_PROBES = 64
_TAKE_OUT_ROUNDS = 4  # finds, then percolations again, for one batch at most
_HIGHLIGHTED_AT_ONCE = 1_000  # queries highlighted by one search (its hits, at most)


class TooManyQueries(Exception):
    """An index has as many stored queries as it may have."""


class TakenOut(Exception):
    """A query the engine could not run when percolating was taken out of percolation."""


class Percolator:
    """Stores queries and percolates documents against them."""

    def __init__(
        self,
        engine: Engine,
        page_size: int = 1000,
        replicas: str = "0-1",
        max_filter_terms: int = 10_000,
        max_queries: int = 10_000,
        max_indexes: int = 100,
        clock: IReactorTime = default_reactor,
        listened_window: float = 60.0,
    ):
        self.engine = engine
        # A query registered or looked up (by any Beater) is percolated for this many seconds,
        # whoever listens: see percolate().
        self.listened_window = listened_window
        self.max_queries = max_queries  # per index
        self._counting: dict[str, DeferredLock] = {}  # by source index: a count and a store at a time
        self._clock = clock
        self.page_size = page_size
        # Past this many listened-to queries, all are percolated and the others dropped here:
        # a terms filter longer than the engine's index.max_terms_count fails every percolation.
        self.max_filter_terms = max_filter_terms
        self.mappings = Mappings(engine, replicas, max_indexes)
        self.sweep = Sweep(engine, replicas, clock)
        # Called with ("bulk_item", count) for items of the sweep's bulk requests the engine
        # refused, ("query_taken_out", 1) for each query taken out of percolation (Beater counts
        # them in its metrics).
        self.failed: Callable[[str, int], Any] = lambda what, count: None
        self.mappings.failed = self.sweep.failed = lambda what, count: self.failed(what, count)
        # Called with (query ID, why) when a query is taken out of percolation (Beater tells
        # its subscribers).
        self.taken_out: Callable[[str, str], Any] = lambda query_id, why: None

    async def store(self, query: Identified) -> None:
        """Store ``query`` so that it matches from the moment this returns.

        Raises InvalidQuery with the engine's reason if the engine refuses it. Nothing is cached:
        the engine alone knows what is stored (it may have been restarted, or wiped). A query
        stored already is not stored again.
        """
        made = await self.mappings.ensure(query.index)
        seen = await self._stored_seen(query)
        if seen is not None:
            await self._listened(percolator_index(query.index), query.id, seen)
            return
        # Counted and stored one at a time per index: registrations at once through this Beater
        # cannot all see room for one more. Each Beater's count is exact; Beaters registering
        # on one index at the same moment may overshoot the cap by one less than their number.
        lock = self._counting.setdefault(query.index, DeferredLock())
        await lock.acquire()
        try:
            await self._count_and_put(query, made)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._counting.pop(query.index, None)

    async def _count_and_put(self, query: Identified, made: Made) -> None:
        count = await self.engine.request("GET", path(percolator_index(query.index), "_count"))
        if count["count"] >= self.max_queries:
            raise TooManyQueries(
                f"index '{query.index}' has {count['count']} stored queries, as many as it may have; "
                "queries nobody uses are removed in time"
            )
        if made.source:
            await self.mappings.follow_source(query.index, made)
        else:
            await self.mappings.map_fields(query, made.known)
        clause = with_default_fields(query.clause, made.default_fields)
        document = {
            QUERY_FIELD: clause,
            ID_FIELD: query.id,
            META_FIELD: {"index": query.index, "query": query.query},
            SEEN_FIELD: int(self._clock.seconds()),
        }
        if query.highlight:
            document[META_FIELD]["highlight"] = True
            document[HIGHLIGHT_FIELD] = "any" if ALL_FIELD in json.dumps(clause) else "fields"
            await self.mappings.mapped_for_highlights(query.index)
        try:
            # refresh=true: a stored query matches only after a refresh of its index.
            await self.engine.request(
                "PUT",
                path(percolator_index(query.index), "_doc", query.id),
                document,
                params={"refresh": "true"},
            )
        except EngineError as e:
            raise InvalidQuery(e.reason) from e
        except EngineUnavailable as e:
            # A 500 for a stored query is the engine failing on this query (it answered, and the
            # checks let through something it cannot handle): the client's to change, not retry.
            if e.status == 500:
                raise InvalidQuery(f"the search engine cannot run this query: {e}") from e
            raise

    async def _stored_seen(self, query: Identified) -> int | None:
        """When a stored query was last in use (epoch seconds; 0 if unknown), or None if it is
        not stored."""
        for attempt in range(_RECOVERING_RETRIES):
            try:
                answer = await self.engine.request(
                    "GET",
                    path(percolator_index(query.index), "_doc", query.id),
                    # Not real-time: a query another Beater has written but whose refresh is
                    # still to come is not searchable yet, so it is stored (and refreshed) here
                    # too; a subscriber could miss what is posted in between otherwise.
                    params={"_source_includes": f"{SEEN_FIELD},{TAKEN_OUT_FIELD}", "realtime": "false"},
                )
            except EngineError as e:
                if e.status == 404:
                    return None  # no such query, or no index yet
                raise
            except EngineUnavailable as e:
                # A shard just started (its index created a moment ago, here or by another
                # Beater) refuses real-time reads for a moment while health is already yellow.
                if "RECOVERING" not in str(e) or attempt == _RECOVERING_RETRIES - 1:
                    raise
                await deferLater(self._clock, 0.1, lambda: None)
                continue
            source = answer.get("_source", {}) if answer.get("found") else {}
            if not source or TAKEN_OUT_FIELD in source:
                return None  # not stored, or taken out: registering it stores it again
            return int(source.get(SEEN_FIELD) or 0)
        return None

    async def _listened(self, name: str, query_id: str, seen: int) -> None:
        """Record, where every Beater's percolations see it, that a stored query is about to be
        listened to, unless that is recorded for half the window still.

        A subscription reaches the other Beaters as a router meta-event, which may come after a
        document they were sent once the stream's first bytes were out; until it does, they
        percolate the query because of this record (percolate()).
        """
        now = self._clock.seconds()
        if seen >= now - self.listened_window / 2:
            return
        try:
            await self.engine.request(
                "POST",
                path(name, "_update", query_id),
                {"doc": {SEEN_FIELD: int(now)}},
                params={"refresh": "true", "retry_on_conflict": "3"},
            )
        except EngineError as e:
            if e.status != 409:
                raise
            # Recorded by another call at the same moment: wait until percolations can see it.
            await self.engine.request("POST", path(name, "_refresh"))

    async def find(self, query_id: str) -> dict[str, Any] | None:
        """The ``{"index", "query"}`` a query ID was registered with, or None. Raises TakenOut
        (saying why) for a query taken out of percolation."""
        answer = await self.engine.request(
            "POST",
            f"/{PREFIX}*/_search",
            {
                "query": {"ids": {"values": [query_id]}},
                "_source": [META_FIELD, SEEN_FIELD, TAKEN_OUT_FIELD],
                "size": 1,
            },
            params={"ignore_unavailable": "true", "allow_no_indices": "true"},
        )
        hits = answer["hits"]["hits"]
        if not hits:
            return None
        if TAKEN_OUT_FIELD in hits[0]["_source"]:
            raise TakenOut(_taken_out_message(hits[0]["_source"][TAKEN_OUT_FIELD]))
        await self._listened(hits[0]["_index"], query_id, int(hits[0]["_source"].get(SEEN_FIELD) or 0))
        return hits[0]["_source"][META_FIELD]

    async def percolate(self, index: str, documents: list[dict], only: list[str] | None = None) -> Matches:
        """Match ``documents`` against the queries of ``index`` in one percolation: those in
        ``only`` (if given: those this Beater knows to be listened to), and those any Beater
        registered or looked up within ``listened_window`` seconds.

        Fires with ``{query_id: [positions of the matching documents]}`` (Matches: also which
        of them were registered for highlights). Pages through all matching queries: a search
        returns only a page of hits at a time.
        """
        # Encoded once, for every page and every probe.
        percolate = {"percolate": {"field": QUERY_FIELD, "documents": await encode(documents)}}
        query: dict[str, Any] = percolate
        wanted = None
        since = int(self._clock.seconds() - self.listened_window)
        recent = {"range": {SEEN_FIELD: {"gte": since}}}
        if only is not None:
            if len(only) <= self.max_filter_terms:
                chosen = {"bool": {"should": [{"terms": {ID_FIELD: only}}, recent]}} if only else recent
                query = {"bool": {"filter": [percolate, chosen]}}
            else:
                wanted = set(only)
        body: dict[str, Any] = {
            "query": query,
            "_source": False,
            "docvalue_fields": [HIGHLIGHT_FIELD, SEEN_FIELD],
            "size": self.page_size,
            "sort": [{ID_FIELD: "asc"}],
            "track_total_hits": False,
        }
        matches = Matches()
        rounds = 0
        while True:
            try:
                answer = await self.engine.request("POST", path(percolator_index(index), "_search"), body)
            except EngineError as e:
                if e.type == "index_not_found_exception":
                    return matches  # no query was ever registered for this index
                if wanted is None and only is not None and "max_terms_count" in json.dumps(e.body):
                    # The index allows fewer terms than are listened to: filter here instead.
                    body["query"], wanted = percolate, set(only)
                    continue
                if e.misconfiguration or rounds == _TAKE_OUT_ROUNDS:
                    raise
                # The documents' fault (raised as it is), or a stored query's: then it is taken
                # out, and the batch percolated again, from its first page.
                rounds += 1
                await self._take_out_failing(index, percolate, e)
                matches = Matches()
                body.pop("search_after", None)
                continue
            hits = answer["hits"]["hits"]
            for hit in hits:
                recent = _seen(hit) >= since
                if wanted is None or hit["_id"] in wanted or recent:
                    matches[hit["_id"]] = hit["fields"]["_percolator_document_slot"]
                    if recent:
                        matches.recent.add(hit["_id"])
                    mode = hit["fields"].get(HIGHLIGHT_FIELD)
                    if mode:
                        matches.highlight[hit["_id"]] = mode[0]
            if len(hits) < self.page_size:
                return matches
            body["search_after"] = hits[-1]["sort"]

    async def listened_elsewhere(self, index: str, besides: list[str]) -> bool:
        """Whether a query of ``index`` other than ``besides`` was registered or looked up
        within ``listened_window`` seconds, through any Beater (percolate() matches those too)."""
        since = int(self._clock.seconds() - self.listened_window)
        body = {
            "size": 0,
            "terminate_after": 1,
            "track_total_hits": True,
            "query": {
                "bool": {
                    "filter": [{"range": {SEEN_FIELD: {"gte": since}}}],
                    "must_not": [{"terms": {ID_FIELD: besides}}],
                }
            },
        }
        try:
            answer = await self.engine.request("POST", path(percolator_index(index), "_search"), body)
        except EngineError as e:
            if e.type == "index_not_found_exception":
                return False
            raise
        return answer["hits"]["total"]["value"] > 0

    async def highlights(
        self, index: str, documents: list[dict], matches: Matches
    ) -> dict[str, dict[int, dict[str, list[str]]]]:
        """The engine's highlights of the matches of the queries registered for them:
        ``{query_id: {position: {field: [the whole value, HTML-escaped, matched terms in
        <em>]}}}``. A field the engine does not highlight (a range on a number, ``_exists_``)
        is left out. One percolation of the documents they matched per way of highlighting."""
        found: dict[str, dict[int, dict[str, list[str]]]] = {}
        for mode in ("fields", "any"):
            chosen = sorted(query_id for query_id, how in matches.highlight.items() if how == mode)
            for start in range(0, len(chosen), _HIGHLIGHTED_AT_ONCE):
                ids = chosen[start : start + _HIGHLIGHTED_AT_ONCE]
                await self._highlight(index, documents, matches, ids, mode, found)
        return found

    async def _highlight(
        self,
        index: str,
        documents: list[dict],
        matches: Matches,
        ids: list[str],
        mode: str,
        found: dict[str, dict[int, dict[str, list[str]]]],
    ) -> None:
        """The highlights of the queries ``ids`` (highlighted as ``mode`` says) into ``found``."""
        slots = sorted({slot for query_id in ids for slot in matches[query_id]})
        body = {
            "query": {
                "bool": {
                    "filter": [
                        {
                            "percolate": {
                                "field": QUERY_FIELD,
                                "documents": await encode([documents[slot] for slot in slots]),
                            }
                        },
                        {"terms": {ID_FIELD: ids}},
                    ]
                }
            },
            "_source": False,
            "size": len(ids),
            "highlight": {**HIGHLIGHT, "require_field_match": mode == "fields", "fields": {"*": {}}},
        }
        answer = await self.engine.request("POST", path(percolator_index(index), "_search"), body)
        for hit in answer["hits"]["hits"]:
            for key, values in hit.get("highlight", {}).items():
                # With several documents the engine names a field with its document's slot
                # first ("3_msg"); with one, by its name alone.
                slot, field = (
                    ("0", key) if len(slots) == 1 else key.split("_", 1) if "_" in key else ("", key)
                )
                if not slot.isdigit() or field.startswith("estrom_") or int(slot) >= len(slots):
                    continue
                found.setdefault(hit["_id"], {}).setdefault(slots[int(slot)], {})[field] = values

    async def _take_out_failing(self, index: str, percolate: dict[str, Any], error: EngineError) -> None:
        """After the percolation of documents (the query ``percolate``) failed with ``error``: raise it if the
        documents are what the engine cannot read; else find the stored queries it cannot run
        (by halves of the sorted query IDs) and take them out of percolation. Raises
        EngineUnavailable if none was found (the failure did not come again)."""
        name = percolator_index(index)

        async def fails(chosen: dict[str, Any]) -> str | None:
            """Why the documents fail against the queries ``chosen`` selects, or None."""
            # Every match counted: each chosen query is run (without a count to make, the engine
            # would stop at the first page, or before for a page of none).
            body = {"query": {"bool": {"filter": [percolate, chosen]}}, "size": 0, "track_total_hits": True}
            try:
                await self.engine.request("POST", path(name, "_search"), body)
            except EngineError as e:
                if e.misconfiguration:
                    raise
                return e.reason
            return None

        # Against no stored query at all, the engine still reads every document.
        if await fails({"term": {ID_FIELD: ""}}) is not None:
            raise error
        ids = await self._query_ids(name)
        found: list[tuple[str, str]] = []
        halves, probes = [(0, len(ids))] if ids else [], _PROBES
        while halves and probes:
            start, end = halves.pop()
            probes -= 1
            why = await fails({"range": {ID_FIELD: {"gte": ids[start], "lte": ids[end - 1]}}})
            if why is None:
                continue
            if end - start == 1:
                found.append((ids[start], why))
                continue
            middle = (start + end) // 2
            halves += [(middle, end), (start, middle)]
        for query_id, why in found:
            await self._take_out(name, query_id, why)
        if not found:
            raise EngineUnavailable(f"percolating failed, and not again on its own: {error.reason}: retry")

    async def _query_ids(self, name: str) -> list[str]:
        """The IDs of the queries of a percolator index still percolated, sorted."""
        body: dict[str, Any] = {
            "query": {"bool": {"must_not": [{"exists": {"field": TAKEN_OUT_FIELD}}]}},
            "_source": False,
            "size": 10_000,
            "sort": [{ID_FIELD: "asc"}],
            "track_total_hits": False,
        }
        ids: list[str] = []
        while True:
            hits = (await self.engine.request("POST", path(name, "_search"), body))["hits"]["hits"]
            ids.extend(hit["_id"] for hit in hits)
            if len(hits) < body["size"]:
                return ids
            body["search_after"] = hits[-1]["sort"]

    async def _take_out(self, name: str, query_id: str, why: str) -> None:
        """Keep a stored query without its clause, and why: it matches nothing from now on, a
        lookup says why, and registering it again tries to store it again."""
        await self.engine.request(
            "PUT", path(name, "_mapping"), {"properties": {TAKEN_OUT_FIELD: TAKEN_OUT_MAPPING}}
        )
        stored = await self.engine.request("GET", path(name, "_doc", query_id))
        if not stored.get("found"):
            return  # removed meanwhile
        source = {key: value for key, value in stored["_source"].items() if key != QUERY_FIELD}
        source[TAKEN_OUT_FIELD] = why[:1000]
        try:
            await self.engine.request(
                "PUT",
                path(name, "_doc", query_id),
                source,
                params={
                    "refresh": "true",
                    "if_seq_no": str(stored["_seq_no"]),
                    "if_primary_term": str(stored["_primary_term"]),
                },
            )
        except EngineError as e:
            if e.status == 409:
                return  # stored again meanwhile: percolated again, and taken out again if it fails
            raise
        self.failed("query_taken_out", 1)
        log.error(
            "Beater: the search engine cannot run the stored query {id} of {name} when percolating, "
            "so it was taken out of percolation: {why}",
            id=query_id,
            name=name,
            why=why,
        )
        self.taken_out(query_id, _taken_out_message(why))


class Matches(dict):
    """``{query_id: [positions of the matching documents]}``; ``highlight``: the matching
    queries registered for highlights, with how (HIGHLIGHT_FIELD); ``recent``: those some Beater
    registered or looked up within the listened-to window (a subscriber may follow that the
    router has not told every Beater of yet)."""

    def __init__(self) -> None:
        super().__init__()
        self.highlight: dict[str, str] = {}
        self.recent: set[str] = set()


def _taken_out_message(why: str) -> str:
    return (
        f"the search engine can no longer run this query, and it was taken out: {why} "
        "(register it again to store it again)"
    )


def _seen(hit: dict[str, Any]) -> int:
    return int((hit.get("fields", {}).get(SEEN_FIELD) or [0])[0])
