"""Where documents are matched: estrom's percolator indexes in the search engine.

Per source index ``<index>`` there is one percolator index ``estrom-queries-<index>``, and each
registered query is one document in it, whose ``_id`` is the query's ID. A stored query must
match exactly what the engine's own search of the source index would find:

- When the source index exists, the percolator index is made like it: the same mappings and
  analysis, and the same default fields (``*`` unless the source sets
  ``index.query.default_field``). Fields the source gains later are added at the next
  registration or sweep, and then every stored query of the index is stored again, so that the
  engine reads it with the new mapping (the engines' advice after a mapping change).
- When it does not, unknown fields are text, every field is copied into ``estrom_all``, the
  default field, and each field a query names is mapped as the engine maps a new string (or as a
  number, when the query compares it with numbers).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from beater.engine import Engine, EngineError, EngineUnavailable, FailedItem, encode, path
from beater.fields import searched_fields, with_default_fields
from beater.identity import Identified
from beater.validation import InvalidQuery
from estrom.coalesce import Coalesce

log = Logger()

PREFIX = "estrom-queries-"
QUERY_FIELD = "estrom_query"
ID_FIELD = "estrom_id"
META_FIELD = "estrom_meta"
ALL_FIELD = "estrom_all"
SEEN_FIELD = "estrom_seen"  # when someone last registered, looked up or listened to it (epoch s)
# Why the engine could not run a stored query at percolation time: the query is kept without
# its clause (out of percolation), so that a lookup can say why.
TAKEN_OUT_FIELD = "estrom_taken_out"
# A query registered for highlights: how the engine highlights its matches. "fields": in the
# fields it searches; "any": its terms wherever they are (it searches ALL_FIELD, a copy that is
# not in the document's source, so the fields it searches there cannot be told apart).
HIGHLIGHT_FIELD = "estrom_highlight"
# Asked of the engine's highlighter: whole values (no fragments), HTML-escaped with <em> marks,
# so that a reader can tell the marks from the document's own text.
HIGHLIGHT = {"encoder": "html", "number_of_fragments": 0, "pre_tags": ["<em>"], "post_tags": ["</em>"]}
META_KEY = "estrom"  # in the percolator index's mapping _meta: how it was made
# Leases of the work one Beater at a time does (the sweep): no index a sender can name starts
# with "." (check_index), nor is it a percolator index.
LEASES = ".estrom-leases"


_RECOVERING_RETRIES = 50  # 0.1 s apart
_FIELDS_FOLLOWED = 10_000  # field paths remembered per index (the engine's default limit is 1,000)
_MAPPING_ATTEMPTS = 5  # registrations at the same time may map the same new fields
# Percolations of one batch spent finding the stored queries the engine cannot run (each
# such query costs about twice the logarithm of the index's count of queries).
_PROBES = 64
_TAKE_OUT_ROUNDS = 4  # finds, then percolations again, for one batch at most


class TooManyQueries(Exception):
    """An index has as many stored queries as it may have."""


class TooManyIndexes(Exception):
    """There are as many percolator indexes as there may be, and this one would be new."""


class TakenOut(Exception):
    """A query the engine could not run when percolating was taken out of percolation."""


@dataclass(frozen=True)
class _Made:
    """How a percolator index was made: after a source index (``source``) or not, the default
    fields of its queries, and the field paths it has mapped."""

    source: bool
    default_fields: list[str]
    known: set[str]


def percolator_index(index: str) -> str:
    return PREFIX + index


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
        # Percolator indexes at most: each GET of a stream on a new index name would make one.
        self.max_indexes = max_indexes
        self._creating = DeferredLock()  # one percolator index counted and made at a time
        self._ensuring = Coalesce()  # by source index
        self._counting: dict[str, DeferredLock] = {}  # by source index: a count and a store at a time
        # By source index: the field paths of stored documents its percolator index followed.
        self._followed: dict[str, set[str]] = {}
        self._serving_indexes: set[str] = set()  # percolator indexes seen with a started primary
        self._highlight_mapped: set[str] = set()  # indexes whose percolator index maps HIGHLIGHT_FIELD
        self._clock = clock
        self.page_size = page_size
        self.replicas = replicas  # of each percolator index: a count, or auto-expanded ("0-1")
        # Past this many listened-to queries, all are percolated and the others dropped here:
        # a terms filter longer than the engine's index.max_terms_count fails every percolation.
        self.max_filter_terms = max_filter_terms
        # Indexes whose queries were not all stored again after their mapping grew.
        self._store_again_pending: set[str] = set()
        # Called with ("bulk_item", count) for items of the sweep's bulk requests the engine
        # refused, ("query_taken_out", 1) for each query taken out of percolation (Beater counts
        # them in its metrics).
        self.failed: Callable[[str, int], Any] = lambda what, count: None
        # Called with (query ID, why) when a query is taken out of percolation (Beater tells
        # its subscribers).
        self.taken_out: Callable[[str, str], Any] = lambda query_id, why: None
        # Called with an index whose percolator index's mapping this Percolator changed.
        self.remapped: Callable[[str], Any] = lambda index: None

    async def store(self, query: Identified) -> None:
        """Store ``query`` so that it matches from the moment this returns.

        Raises InvalidQuery with the engine's reason if the engine refuses it. Nothing is cached:
        the engine alone knows what is stored (it may have been restarted, or wiped). A query
        stored already is not stored again.
        """
        # Registrations for one index at once share its creation: until its primary shard has
        # started, the engine answers 503 for what is in it.
        made = await self._ensuring.run(
            query.index, lambda: Deferred.fromCoroutine(self._ensure_index(query.index))
        )
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

    async def _count_and_put(self, query: Identified, made: _Made) -> None:
        count = await self.engine.request("GET", path(percolator_index(query.index), "_count"))
        if count["count"] >= self.max_queries:
            raise TooManyQueries(
                f"index '{query.index}' has {count['count']} stored queries, as many as it may have; "
                "queries nobody uses are removed in time"
            )
        if made.source:
            await self._follow_source(query.index, made)
        else:
            await self._map_fields(query, made.known)
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
            await self._mapped_for_highlights(query.index)
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

    async def mark_seen(self, query_ids: list[str], patterns: tuple[str, ...] = ("*",)) -> int:
        """Record that ``query_ids`` are in use now; fires with how many were found."""
        now = int(self._clock.seconds())
        marked = 0
        for start in range(0, len(query_ids), 1000):
            chunk = query_ids[start : start + 1000]
            answer = await self.engine.request(
                "POST",
                f"/{_indexes(patterns)}/_search",
                {"query": {"ids": {"values": chunk}}, "_source": False, "size": len(chunk)},
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
            )
            hits = answer["hits"]["hits"]
            if not hits:
                continue
            refused = await self.engine.bulk_items(
                [
                    [{"update": {"_index": hit["_index"], "_id": hit["_id"]}}, {"doc": {SEEN_FIELD: now}}]
                    for hit in hits
                ]
            )
            # One removed since the search (404) is not in use: it is stored again by whoever
            # registers it. Anything else is a failure: it may be removed while in use.
            failed = [r for r in refused if r.status != 404]
            self._log_failed_items("record as in use", failed, [hit["_id"] for hit in hits])
            marked += len(hits) - len(refused)
        return marked

    async def remove_unused(
        self, unused_for: float, patterns: tuple[str, ...] = ("*",), keep: Collection[str] = ()
    ) -> int:
        """Remove the queries of ``patterns``' indexes that were not in use for ``unused_for``
        seconds, except those in ``keep`` (known to be in use now: whatever their record says,
        which the sweep's own marking may not have reached yet); fires with how many were removed.

        A search and a bulk delete per thousand (delete-by-query is a module of its own, which an
        engine may lack). Each delete is of the version the search found: a query that anyone
        (any Beater) registered, looked up or recorded as in use since is changed, and stays
        (409). A query used after it was removed is stored again by whoever registers it.
        """
        query: dict[str, Any] = {"range": {SEEN_FIELD: {"lt": int(self._clock.seconds() - unused_for)}}}
        if keep:
            query = {"bool": {"filter": [query], "must_not": [{"ids": {"values": sorted(keep)}}]}}
        removed = 0
        while True:
            answer = await self.engine.request(
                "POST",
                f"/{_indexes(patterns)}/_search",
                {"query": query, "_source": False, "size": 1000, "seq_no_primary_term": True},
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
            )
            hits = answer["hits"]["hits"]
            if not hits:
                return removed
            refused = await self.engine.bulk_items([[_versioned("delete", hit)] for hit in hits])
            # 409: changed since the search (in use again); 404: removed by another sweep.
            self._log_failed_items(
                "remove", [r for r in refused if r.status not in (404, 409)], [h["_id"] for h in hits]
            )
            await self.engine.request(
                "POST",
                f"/{_indexes(patterns)}/_refresh",
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
            )
            gone = len(hits) - len(refused)
            removed += gone
            if not gone and all(r.status != 409 for r in refused):
                return removed  # the engine removes none of these: searching again finds them again

    async def follow_sources(self, patterns: tuple[str, ...] = ("*",)) -> int:
        """Bring the percolator indexes of ``patterns``' source indexes in step with their
        sources' mappings (see _follow_source); fires with how many had grown."""
        answer = await self.engine.request(
            "GET",
            f"/{_indexes(patterns)}/_mapping",
            params={"ignore_unavailable": "true", "allow_no_indices": "true"},
        )
        grown = 0
        for name, mapping in sorted(answer.items()):
            made = _made(mapping.get("mappings", {}))
            if made.source and name.startswith(PREFIX):
                grown += await self._follow_source(name[len(PREFIX) :], made)
        return grown

    async def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take (or keep) the lease ``name`` for ``holder`` for ``seconds`` from now, unless
        another holder has it and it has not expired; whether ``holder`` has it now.

        A lease is a document of LEASES: taken by creating it, kept or taken over by writing the
        version that was read (if_seq_no), so that of Beaters asking at once one gets it. Its
        expiry is in the holders' clocks: keep them in step."""
        now = self._clock.seconds()
        lease = {"holder": holder, "until": now + seconds}
        found = await self._lease(name)
        try:
            if found is None:
                await self.engine.request("PUT", path(LEASES, "_create", name), lease, {"refresh": "true"})
                return True
            held = found.get("_source", {})
            if held.get("holder") != holder and float(held.get("until") or 0) > now:
                return False
            await self.engine.request(
                "PUT",
                path(LEASES, "_doc", name),
                lease,
                {
                    "if_seq_no": str(found["_seq_no"]),
                    "if_primary_term": str(found["_primary_term"]),
                    "refresh": "true",
                },
            )
        except EngineError as e:
            if e.status != 409:
                raise
            return False  # taken by another meanwhile
        return True

    async def give_lease_back(self, name: str, holder: str) -> None:
        """End ``holder``'s lease ``name`` (if it has it), so another may take it at once."""
        found = await self._lease(name)
        if found is None or found.get("_source", {}).get("holder") != holder:
            return
        try:
            await self.engine.request(
                "DELETE",
                path(LEASES, "_doc", name),
                params={"if_seq_no": str(found["_seq_no"]), "if_primary_term": str(found["_primary_term"])},
            )
        except EngineError as e:
            if e.status not in (404, 409):
                raise

    async def _lease(self, name: str) -> dict[str, Any] | None:
        """The lease document ``name`` as the engine has it (with its version), or None; makes
        LEASES the first time."""
        try:
            return await self.engine.request("GET", path(LEASES, "_doc", name))
        except EngineError as e:
            if e.status != 404:
                raise
            if isinstance(e.body, dict) and e.body.get("found") is False:
                return None  # the index is there, the lease is not
        try:
            await self.engine.request(
                "PUT",
                path(LEASES),
                {
                    # Hidden: left out of "*" (a `GET /*/_search`, or a pattern of indexes).
                    "settings": {**_replicas(self.replicas), "index.hidden": True},
                    "mappings": {"dynamic": False, "properties": {"holder": {"type": "keyword"}}},
                },
            )
        except EngineError as e:
            if e.type != "resource_already_exists_exception":
                raise
        return None

    def new_fields(self, index: str, documents: list[dict]) -> set[str]:
        """The field paths of ``documents`` that the percolator index of ``index`` was not
        brought in step with yet (by ``follow_stored``; up to _FIELDS_FOLLOWED per index)."""
        followed = self._followed.setdefault(index, set())
        if len(followed) >= _FIELDS_FOLLOWED:
            return set()  # a mapping that large is the engine's to refuse; the sweep follows it
        fields: set[str] = set()
        for document in documents:
            document_paths(document, "", fields)
        return fields - followed

    async def follow_stored(self, index: str, fields: set[str]) -> None:
        """Documents just stored in ``index`` named ``fields``, which may be new to it: add them
        to its percolator index (and store its queries again) before they are percolated, as
        the engine's search of the source index reads them. Nothing to do before a query is
        registered."""
        made = await self._made(index)
        if made is not None and made.source:
            await self._follow_source(index, made)
        self._followed.setdefault(index, set()).update(fields)

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

    async def _mapped_for_highlights(self, index: str) -> None:
        """HIGHLIGHT_FIELD mapped in the percolator index of ``index``, made before it was (a
        percolation asks for it unmapped there: the engine gives nothing for it)."""
        if index in self._highlight_mapped:
            return
        try:
            await self.engine.request(
                "PUT",
                path(percolator_index(index), "_mapping"),
                {"properties": {HIGHLIGHT_FIELD: _HIGHLIGHT_MODE}},
            )
        except EngineError as e:
            if e.type != "index_not_found_exception":
                raise
            return
        self._highlight_mapped.add(index)

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
            "PUT", path(name, "_mapping"), {"properties": {TAKEN_OUT_FIELD: _TAKEN_OUT}}
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

    async def _ensure_index(self, index: str) -> _Made:
        """Create the percolator index of ``index`` unless it exists; how it is made."""
        name = percolator_index(index)
        made = await self._made(index)
        if made is not None:
            await self._serving(name)
            return made
        await self._creating.acquire()
        try:
            return await self._create(index)
        finally:
            self._creating.release()

    async def room_for(self, index: str) -> None:
        """Raise TooManyIndexes if the percolator index of ``index`` would be new, and there
        are as many as there may be."""
        if await self._made(index) is not None:
            return
        answer = await self.engine.request(
            "GET",
            f"/_cat/indices/{PREFIX}*",
            params={"h": "index", "format": "json", "expand_wildcards": "all"},
        )
        if len(answer) >= self.max_indexes:
            raise TooManyIndexes(
                f"estrom has {len(answer)} percolator indexes, as many as it may have "
                f"(ESTROM_MAX_PERCOLATOR_INDEXES): a query on the new index '{index}' is refused"
            )

    async def _create(self, index: str) -> _Made:
        """Make the percolator index of ``index``, if there may be one more and it is still
        not there (counted and made under ``_creating``)."""
        name = percolator_index(index)
        made = await self._made(index)
        if made is not None:
            await self._serving(name)
            return made
        await self.room_for(index)
        body = await self._source_copy(index) or _without_source()
        body["settings"].update(_replicas(self.replicas))
        body["settings"]["index.percolator.map_unmapped_fields_as_text"] = True
        body["mappings"].setdefault("properties", {}).update(
            {
                QUERY_FIELD: {"type": "percolator"},
                ID_FIELD: {"type": "keyword"},
                META_FIELD: {"type": "object", "enabled": False},
                SEEN_FIELD: {"type": "long"},
                TAKEN_OUT_FIELD: _TAKEN_OUT,
                HIGHLIGHT_FIELD: _HIGHLIGHT_MODE,
            }
        )
        try:
            await self.engine.request("PUT", path(name), body)
        except EngineError as e:
            if e.type != "resource_already_exists_exception":
                raise
            await self._serving(name)  # created meanwhile by another Beater
            made = await self._made(index)
            if made is None:
                raise EngineUnavailable(
                    f"the percolator index of '{index}' was made and removed meanwhile"
                ) from e
            return made
        await self._serving(name)
        return _made(body["mappings"])

    async def _made(self, index: str) -> _Made | None:
        """How the percolator index of ``index`` was made, or None if there is none."""
        name = percolator_index(index)
        try:
            answer = await self.engine.request("GET", path(name, "_mapping"))
        except EngineError as e:
            if e.status == 404:
                return None
            raise
        return _made(answer[name]["mappings"])

    async def _source_copy(self, index: str) -> dict[str, Any] | None:
        """Settings and mappings for a percolator index made like the source index, or None if
        there is no source index."""
        try:
            mappings = await self.engine.request("GET", path(index, "_mapping"))
            settings = await self.engine.request("GET", path(index, "_settings"))
        except EngineError as e:
            if e.status == 404:
                return None
            raise
        mapping: dict[str, Any] = {"properties": {}}
        for name in sorted(mappings):  # one entry per index behind an alias or pattern
            source = mappings[name].get("mappings", {})
            for key in ("dynamic", "dynamic_templates", "date_detection", "numeric_detection"):
                if key in source and key not in mapping:
                    mapping[key] = source[key]
            mapping["properties"].update(_source_fields(source.get("properties", {})))
        index_settings = settings[min(settings)]["settings"].get("index", {}) if settings else {}
        default_fields = index_settings.get("query", {}).get("default_field", ["*"])
        if isinstance(default_fields, str):
            default_fields = [default_fields]
        mapping["_meta"] = {META_KEY: {"source": True, "default_fields": default_fields}}
        copied = {"index.query.default_field": default_fields}
        if "analysis" in index_settings:
            copied["index.analysis"] = index_settings["analysis"]
        return {"settings": copied, "mappings": mapping}

    async def _follow_source(self, index: str, made: _Made) -> bool:
        """Add the fields the source index has gained to the percolator index, then store its
        queries again: a stored query is read with the mapping of the time it was stored.
        Whether there were any."""
        try:
            answer = await self.engine.request("GET", path(index, "_mapping"))
        except EngineError as e:
            if e.status == 404:
                return False  # deleted meanwhile: what was copied stays
            raise
        properties: dict[str, Any] = {}
        for name in sorted(answer):
            properties.update(_source_fields(answer[name].get("mappings", {}).get("properties", {})))
        if set(_field_names(properties)) <= made.known and index not in self._store_again_pending:
            return False
        try:
            await self.engine.request(
                "PUT", path(percolator_index(index), "_mapping"), {"properties": properties}
            )
        except EngineError as e:
            log.warn(
                "Beater: cannot follow the mapping of index {index}: {error}", index=index, error=e.reason
            )
            return False
        finally:
            self.remapped(index)  # taken or not, the mapping may differ from what was read
        made.known.update(_field_names(properties))
        await self._store_again(index)
        return True

    async def _store_again(self, index: str) -> None:
        """Index every stored query of ``index`` again, as it is: each only if unchanged since it
        was read (indexing the copy read before would undo a change made since). A query changed
        meanwhile (its ``estrom_seen`` updated) may have been parsed just before the new mapping
        applied: it is read and stored again, a few times at most. Queries the engine refuses,
        or that keep changing, are logged, counted, and stored again at the next sweep."""
        name = percolator_index(index)
        body: dict[str, Any] = {
            "size": 500,
            "sort": [{ID_FIELD: "asc"}],
            "query": {"match_all": {}},
            "seq_no_primary_term": True,
        }
        stored = failed = 0
        self._store_again_pending.add(index)
        changed: list[str] = []  # since they were read
        while True:
            answer = await self.engine.request("POST", path(name, "_search"), body)
            hits = answer["hits"]["hits"]
            if hits:
                done, refused = await self._index_again(index, hits, changed)
                stored += done
                failed += refused
            if len(hits) < body["size"]:
                break
            body["search_after"] = hits[-1]["sort"]
        for _ in range(_STORE_AGAIN_ROUNDS):
            if not changed:
                break
            ids, changed = changed, []
            answer = await self.engine.request(
                "POST",
                path(name, "_search"),
                {"query": {"ids": {"values": ids}}, "size": len(ids), "seq_no_primary_term": True},
            )
            done, refused = await self._index_again(index, answer["hits"]["hits"], changed)
            stored += done
            failed += refused
        failed += len(changed)
        await self.engine.request("POST", path(name, "_refresh"))
        if not failed:
            self._store_again_pending.discard(index)
        log.info(
            "Beater: the mapping of index {index} grew: {count} queries stored again{failed}",
            index=index,
            count=stored,
            failed=f", {failed} refused (tried again at the next sweep)" if failed else "",
        )

    async def _index_again(self, index: str, hits: list[dict], changed: list[str]) -> tuple[int, int]:
        """Index ``hits`` (stored queries read with their sequence numbers) again, each only if
        unchanged since: how many were, and how many the engine refused. The IDs of those changed
        since go to ``changed``; those gone since are done."""
        answered = await self.engine.bulk_items([[_versioned("index", hit), hit["_source"]] for hit in hits])
        ids = [hit["_id"] for hit in hits]
        conflicts = [ids[r.position] for r in answered if r.status == 409]
        changed += conflicts
        refused = [r for r in answered if r.status not in (404, 409)]
        self._log_failed_items(f"store again under the new mapping of {index!r}", refused, ids)
        return len(hits) - len(conflicts) - len(refused), len(refused)

    def _log_failed_items(self, what: str, refused: list[FailedItem], ids: list[str]) -> None:
        """Log and count the items of one of the sweep's bulk requests that the engine refused
        (``ids``: the request's, by position)."""
        if not refused:
            return
        self.failed("bulk_item", len(refused))
        log.warn(
            "Beater: the search engine refused to {what} {count} stored queries, e.g. {id}: {error}",
            what=what,
            count=len(refused),
            id=ids[refused[0].position],
            error=str(refused[0]),
        )

    async def _serving(self, name: str) -> None:
        """Wait until an index's primary shard has started, the first time this Beater uses it:
        until then the engine answers 503 ("shard state RECOVERING") to what comes next, also to
        another Beater that finds the index just created."""
        if name in self._serving_indexes:
            return
        await self.engine.request(
            "GET", path("_cluster", "health", name), params={"wait_for_status": "yellow", "timeout": "30s"}
        )
        self._serving_indexes.add(name)

    async def _map_fields(self, query: Identified, known: set[str]) -> None:
        """Map the fields that ``query`` names, where still unmapped.

        ``map_unmapped_fields_as_text`` is not enough: OpenSearch turns a term, range or exists
        query on an unmapped field into "match none" when it runs a stored query and refuses a
        match query on one under ``must_not``; Elasticsearch 7 does the same to a query string
        naming one. Such a field is mapped as the engine maps a new string (text, with a
        ``keyword`` sub-field), or as a number when the query compares it with numbers. The first
        query to name a field decides; one registered at the same time may have mapped it since
        ``known`` was read, so a refused mapping is tried again with what is mapped now.
        """
        name = percolator_index(query.index)
        for attempt in range(_MAPPING_ATTEMPTS):
            missing = {
                field: kind for field, kind in searched_fields(query.clause).items() if field not in known
            }
            if not missing:
                return
            properties = {field: _NUMBER if kind == "number" else _STRING for field, kind in missing.items()}
            try:
                await self.engine.request("PUT", path(name, "_mapping"), {"properties": properties})
                return
            except EngineError as e:
                if attempt == _MAPPING_ATTEMPTS - 1:
                    raise InvalidQuery(e.reason) from e
            answer = await self.engine.request("GET", path(name, "_mapping"))
            known = set(_field_names(answer[name]["mappings"].get("properties", {})))


_TAKEN_OUT = {"type": "keyword"}
_HIGHLIGHT_MODE = {"type": "keyword"}
_HIGHLIGHTED_AT_ONCE = 1_000  # queries highlighted by one search (its hits, at most)
_STORE_AGAIN_ROUNDS = 3  # of storing again the queries changed while they were stored again


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


def document_paths(value: Any, prefix: str, into: set[str]) -> None:
    """Add the field paths of a document (or of its objects, under ``prefix``) to ``into``."""
    if isinstance(value, list):
        for item in value:
            document_paths(item, prefix, into)
    elif isinstance(value, dict):
        for key, item in value.items():
            name = prefix + key
            into.add(name)
            if isinstance(item, (dict, list)):
                document_paths(item, name + ".", into)


def _versioned(action: str, hit: dict[str, Any]) -> dict[str, Any]:
    """A bulk action on the document of search ``hit`` carried out only if it is the version
    the search found (the search asked for ``seq_no_primary_term``)."""
    return {
        action: {
            "_index": hit["_index"],
            "_id": hit["_id"],
            "if_seq_no": hit["_seq_no"],
            "if_primary_term": hit["_primary_term"],
        }
    }


def _seen(hit: dict[str, Any]) -> int:
    return int((hit.get("fields", {}).get(SEEN_FIELD) or [0])[0])


def _indexes(patterns: tuple[str, ...]) -> str:
    """The percolator indexes of the source indexes that ``patterns`` name, as a URL segment."""
    return ",".join(quote(percolator_index(pattern), safe="*") for pattern in patterns)


def _replicas(replicas: str) -> dict[str, Any]:
    """``"0-1"`` (as many as the cluster has room for, up to 1) or a number of replicas."""
    if "-" in replicas:
        return {"index.number_of_shards": 1, "index.auto_expand_replicas": replicas}
    return {"index.number_of_shards": 1, "index.number_of_replicas": int(replicas)}


# How the engine maps a new string field, plus the copy into ALL_FIELD.
_STRING = {
    "type": "text",
    "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
    "copy_to": [ALL_FIELD],
}
_NUMBER = {"type": "double", "ignore_malformed": True, "copy_to": [ALL_FIELD]}


def _field_names(properties: dict[str, Any], prefix: str = "") -> list[str]:
    names = []
    for name, field in properties.items():
        names.append(prefix + name)
        names += _field_names(field.get("properties", {}), f"{prefix}{name}.")
        names += _field_names(field.get("fields", {}), f"{prefix}{name}.")
    return names


def _source_fields(properties: dict[str, Any]) -> dict[str, Any]:
    """A source index's field mappings, but for fields estrom's own names or percolator fields."""
    return {
        name: field
        for name, field in properties.items()
        if not name.startswith("estrom_") and field.get("type") != "percolator"
    }


def _without_source() -> dict[str, Any]:
    """Settings and mappings for a percolator index of an index the engine does not have."""
    return {
        "settings": {"index.query.default_field": [ALL_FIELD]},
        "mappings": {
            "_meta": {META_KEY: {"source": False, "default_fields": [ALL_FIELD]}},
            "dynamic_templates": [
                {
                    ALL_FIELD: {
                        "match_mapping_type": "*",
                        "unmatch": "estrom_*",
                        "mapping": {"type": "{dynamic_type}", "copy_to": ALL_FIELD},
                    }
                }
            ],
            "properties": {ALL_FIELD: {"type": "text"}},
        },
    }


def _made(mappings: dict[str, Any]) -> _Made:
    """How a percolator index was made, from its mappings (indexes made before ``_meta`` was
    written were made without a source, with ``estrom_all``)."""
    meta = mappings.get("_meta", {}).get(META_KEY, {})
    return _Made(
        source=bool(meta.get("source", False)),
        default_fields=list(meta.get("default_fields", [ALL_FIELD])),
        known=set(_field_names(mappings.get("properties", {}))),
    )


_FORBIDDEN_IN_INDEX = set('\\/*?"<>|,#: ')


class InvalidIndex(ValueError):
    """Not a name the engine accepts for an index, or not one estrom is configured to serve."""


def check_index(index: Any, patterns: tuple[str, ...] = ("*",)) -> str:
    """Return ``index`` if the engine accepts it as an index name and it matches one of
    ``patterns`` (shell-style, as in ``ESTROM_INDEX_PATTERNS``); raise InvalidIndex if not."""
    if not isinstance(index, str) or not index:
        raise InvalidIndex("the index name is missing")
    shown = index.encode("unicode_escape").decode("ascii")[:300]  # never echo control characters
    if len(percolator_index(index).encode("utf-8", "surrogatepass")) > 255:
        raise InvalidIndex("the index name is too long")
    if not index.isprintable():
        raise InvalidIndex(f"index name '{shown}' must not contain control or invisible characters")
    if index != index.lower():
        raise InvalidIndex(f"index name '{shown}' must be lowercase")
    if index[0] in "-_+.":
        raise InvalidIndex(f"index name '{shown}' must not start with '-', '_', '+' or '.'")
    if index.startswith(PREFIX):
        raise InvalidIndex(f"index names starting with '{PREFIX}' are estrom's own")
    if _FORBIDDEN_IN_INDEX & set(index):
        raise InvalidIndex(f"index name '{shown}' must not contain any of \\ / * ? \" < > | , # : or a space")
    if not any(fnmatch.fnmatchcase(index, pattern) for pattern in patterns):
        raise InvalidIndex(f"index '{shown}' is not served here (allowed: {', '.join(patterns)})")
    return index
