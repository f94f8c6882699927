"""Where documents are matched: estrom's percolator indexes in the search engine.

Per source index ``<index>`` there is one percolator index ``estrom-queries-<index>``. Its
mapping follows the source index's mapping when that index exists in the engine (so a query on
a keyword or numeric field means what it means there), maps unknown fields as text otherwise, and
copies every field into ``estrom_all``, the default field of query strings without a field
(``foo AND bar``). Each registered query is one document, whose ``_id`` is the query's ID.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any
from urllib.parse import quote

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from beater.engine import Engine, EngineError, EngineUnavailable, path
from beater.identity import Identified, searched_fields
from beater.validation import InvalidQuery
from estrom.coalesce import Coalesce

PREFIX = "estrom-queries-"
QUERY_FIELD = "estrom_query"
ID_FIELD = "estrom_id"
META_FIELD = "estrom_meta"
ALL_FIELD = "estrom_all"
SEEN_FIELD = "estrom_seen"  # when someone last registered, looked up or listened to it (epoch s)


_RECOVERING_RETRIES = 50  # 0.1 s apart


class TooManyQueries(Exception):
    """An index has as many stored queries as it may have."""


# Leaf field types whose values a query string without a field should find.
_COPIED_TYPES = frozenset(
    {
        "text",
        "match_only_text",
        "keyword",
        "wildcard",
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
        "unsigned_long",
        "boolean",
        "date",
        "date_nanos",
        "ip",
    }
)


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
        clock: IReactorTime = default_reactor,
    ):
        self.engine = engine
        self.max_queries = max_queries  # per index
        self._ensuring = Coalesce()  # by source index
        self._serving_indexes: set[str] = set()  # percolator indexes seen with a started primary
        self._clock = clock
        self.page_size = page_size
        self.replicas = replicas  # of each percolator index: a count, or auto-expanded ("0-1")
        # Past this many listened-to queries, all are percolated and the others dropped here:
        # a terms filter longer than the engine's index.max_terms_count fails every percolation.
        self.max_filter_terms = max_filter_terms

    async def store(self, query: Identified) -> None:
        """Store ``query`` so that it matches from the moment this returns.

        Raises InvalidQuery with the engine's reason if the engine refuses it. Nothing is cached:
        the engine alone knows what is stored (it may have been restarted, or wiped). A query
        stored already is not stored again.
        """
        # Registrations for one index at once share its creation: until its primary shard has
        # started, the engine answers 503 for what is in it.
        known = await self._ensuring.run(
            query.index, lambda: Deferred.fromCoroutine(self._ensure_index(query.index))
        )
        if await self._is_stored(query):
            return
        count = await self.engine.request("GET", path(percolator_index(query.index), "_count"))
        if count["count"] >= self.max_queries:
            raise TooManyQueries(
                f"index '{query.index}' has {count['count']} stored queries, as many as it may have; "
                "queries nobody uses are removed in time"
            )
        await self._map_fields(query, known)
        document = {
            QUERY_FIELD: query.clause,
            ID_FIELD: query.id,
            META_FIELD: {"index": query.index, "query": query.query},
            SEEN_FIELD: int(self._clock.seconds()),
        }
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

    async def _is_stored(self, query: Identified) -> bool:
        for attempt in range(_RECOVERING_RETRIES):
            try:
                answer = await self.engine.request(
                    "GET", path(percolator_index(query.index), "_doc", query.id), params={"_source": "false"}
                )
            except EngineError as e:
                if e.status == 404:
                    return False  # no such query, or no index yet
                raise
            except EngineUnavailable as e:
                # A shard just started (its index created a moment ago, here or by another
                # Beater) refuses real-time reads for a moment while health is already yellow.
                if "RECOVERING" not in str(e) or attempt == _RECOVERING_RETRIES - 1:
                    raise
                await deferLater(self._clock, 0.1, lambda: None)
                continue
            return bool(answer.get("found"))
        return False

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
            if hits:
                await self.engine.bulk(
                    [
                        line
                        for hit in hits
                        for line in (
                            {"update": {"_index": hit["_index"], "_id": hit["_id"]}},
                            {"doc": {SEEN_FIELD: now}},
                        )
                    ]
                )
            marked += len(hits)
        return marked

    async def remove_unused(self, unused_for: float, patterns: tuple[str, ...] = ("*",)) -> int:
        """Remove the queries of ``patterns``' indexes that were not in use for ``unused_for``
        seconds; fires with how many were removed.

        A search and a bulk delete per thousand (delete-by-query is a module of its own, which an
        engine may lack). A query used meanwhile is stored again by whoever registers it.
        """
        query = {"range": {SEEN_FIELD: {"lt": int(self._clock.seconds() - unused_for)}}}
        removed = 0
        while True:
            answer = await self.engine.request(
                "POST",
                f"/{_indexes(patterns)}/_search",
                {"query": query, "_source": False, "size": 1000},
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
            )
            hits = answer["hits"]["hits"]
            if not hits:
                return removed
            await self.engine.bulk([{"delete": {"_index": hit["_index"], "_id": hit["_id"]}} for hit in hits])
            await self.engine.request(
                "POST",
                f"/{_indexes(patterns)}/_refresh",
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
            )
            removed += len(hits)

    async def find(self, query_id: str) -> dict[str, Any] | None:
        """The ``{"index", "query"}`` a query ID was registered with, or None."""
        answer = await self.engine.request(
            "POST",
            f"/{PREFIX}*/_search",
            {"query": {"ids": {"values": [query_id]}}, "_source": [META_FIELD], "size": 1},
            params={"ignore_unavailable": "true", "allow_no_indices": "true"},
        )
        hits = answer["hits"]["hits"]
        return hits[0]["_source"][META_FIELD] if hits else None

    async def percolate(
        self, index: str, documents: list[dict], only: list[str] | None = None
    ) -> dict[str, list[int]]:
        """Match ``documents`` against the queries of ``index`` (those in ``only``, if given)
        in one percolation.

        Fires with ``{query_id: [positions of the matching documents]}``. Pages through all
        matching queries: a search returns only a page of hits at a time.
        """
        query: dict[str, Any] = {"percolate": {"field": QUERY_FIELD, "documents": documents}}
        wanted = None
        if only is not None:
            if not only:
                return {}  # nobody listens: nothing to ask the engine
            if len(only) <= self.max_filter_terms:
                query = {"bool": {"filter": [query, {"terms": {ID_FIELD: only}}]}}
            else:
                wanted = set(only)
        body: dict[str, Any] = {
            "query": query,
            "_source": False,
            "size": self.page_size,
            "sort": [{ID_FIELD: "asc"}],
            "track_total_hits": False,
        }
        matches: dict[str, list[int]] = {}
        while True:
            try:
                answer = await self.engine.request("POST", path(percolator_index(index), "_search"), body)
            except EngineError as e:
                if e.type == "index_not_found_exception":
                    return matches  # no query was ever registered for this index
                if wanted is None and only is not None and "max_terms_count" in json.dumps(e.body):
                    # The index allows fewer terms than are listened to: filter here instead.
                    body["query"], wanted = query["bool"]["filter"][0], set(only)
                    continue
                raise
            hits = answer["hits"]["hits"]
            for hit in hits:
                if wanted is None or hit["_id"] in wanted:
                    matches[hit["_id"]] = hit["fields"]["_percolator_document_slot"]
            if len(hits) < self.page_size:
                return matches
            body["search_after"] = hits[-1]["sort"]

    async def _ensure_index(self, index: str) -> set[str]:
        """Create the percolator index of ``index`` unless it exists; its mapped field paths."""
        name = percolator_index(index)
        try:
            answer = await self.engine.request("GET", path(name, "_mapping"))
        except EngineError as e:
            if e.status != 404:
                raise
        else:
            await self._serving(name)
            return set(_field_names(answer[name]["mappings"].get("properties", {})))
        properties = await self._source_properties(index)
        properties.update(
            {
                ALL_FIELD: {"type": "text"},
                QUERY_FIELD: {"type": "percolator"},
                ID_FIELD: {"type": "keyword"},
                META_FIELD: {"type": "object", "enabled": False},
                SEEN_FIELD: {"type": "long"},
            }
        )
        body = {
            "settings": {
                **_replicas(self.replicas),
                "index.percolator.map_unmapped_fields_as_text": True,
                "index.query.default_field": [ALL_FIELD],
            },
            "mappings": {
                "dynamic_templates": [
                    {
                        ALL_FIELD: {
                            "match_mapping_type": "*",
                            "unmatch": "estrom_*",
                            "mapping": {"type": "{dynamic_type}", "copy_to": ALL_FIELD},
                        }
                    }
                ],
                "properties": properties,
            },
        }
        try:
            await self.engine.request("PUT", path(name), body)
        except EngineError as e:
            if e.type != "resource_already_exists_exception":
                raise
            await self._serving(name)  # created meanwhile by another Beater
            return await self._ensure_index(index)
        await self._serving(name)
        return set(_field_names(properties))

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
        ``keyword`` sub-field), or as a number when the query compares it with numbers.
        """
        missing = {field: kind for field, kind in searched_fields(query.clause).items() if field not in known}
        if not missing:
            return
        properties = {field: _NUMBER if kind == "number" else _STRING for field, kind in missing.items()}
        try:
            await self.engine.request(
                "PUT", path(percolator_index(query.index), "_mapping"), {"properties": properties}
            )
        except EngineError as e:
            raise InvalidQuery(e.reason) from e

    async def _source_properties(self, index: str) -> dict[str, Any]:
        """The field mappings of the source index, if it exists, each copied to ALL_FIELD."""
        try:
            answer = await self.engine.request("GET", path(index, "_mapping"))
        except EngineError as e:
            if e.status == 404:
                return {}
            raise
        properties: dict[str, Any] = {}
        for mapping in answer.values():  # one entry per index behind an alias
            properties.update(mapping.get("mappings", {}).get("properties", {}))
        return _copied_to_all(properties)


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


def _copied_to_all(properties: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, field in properties.items():
        if name.startswith("estrom_"):
            continue
        field = dict(field)
        kind = field.get("type", "object")
        if kind == "percolator":
            continue
        if kind == "object" and "properties" in field:
            field["properties"] = _copied_to_all(field["properties"])
        elif kind in _COPIED_TYPES:
            copy_to = field.get("copy_to", [])
            field["copy_to"] = ([copy_to] if isinstance(copy_to, str) else copy_to) + [ALL_FIELD]
        out[name] = field
    return out


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
    if _FORBIDDEN_IN_INDEX & set(index):
        raise InvalidIndex(f"index name '{shown}' must not contain any of \\ / * ? \" < > | , # : or a space")
    if not any(fnmatch.fnmatchcase(index, pattern) for pattern in patterns):
        raise InvalidIndex(f"index '{shown}' is not served here (allowed: {', '.join(patterns)})")
    return index
