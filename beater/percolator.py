"""Where documents are matched: estrom's percolator indexes in the search engine.

Per source index ``<index>`` there is one percolator index ``estrom-queries-<index>``. Its
mapping follows the source index's mapping when that index exists in the engine (so a query on
a keyword or numeric field means what it means there), maps unknown fields as text otherwise, and
copies every field into ``estrom_all``, the default field of query strings without a field
(``foo AND bar``). Each registered query is one document, whose ``_id`` is the query's ID.
"""

from __future__ import annotations

from typing import Any

from beater.engine import Engine, EngineError, path
from beater.identity import Identified, InvalidQuery, searched_fields

PREFIX = "estrom-queries-"
QUERY_FIELD = "estrom_query"
ID_FIELD = "estrom_id"
META_FIELD = "estrom_meta"
ALL_FIELD = "estrom_all"

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

    def __init__(self, engine: Engine, page_size: int = 1000):
        self.engine = engine
        self.page_size = page_size

    async def store(self, query: Identified) -> None:
        """Store ``query`` so that it matches from the moment this returns.

        Raises InvalidQuery with the engine's reason if the engine refuses it. Nothing is cached:
        the engine alone knows what is stored (it may have been restarted, or wiped).
        """
        await self._map_fields(query, await self._ensure_index(query.index))
        document = {
            QUERY_FIELD: query.clause,
            ID_FIELD: query.id,
            META_FIELD: {"index": query.index, "query": query.query},
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
        if only is not None:
            if not only:
                return {}  # nobody listens: nothing to ask the engine
            query = {"bool": {"filter": [query, {"terms": {ID_FIELD: only}}]}}
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
                raise
            hits = answer["hits"]["hits"]
            for hit in hits:
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
            return set(_field_names(answer[name]["mappings"].get("properties", {})))
        properties = await self._source_properties(index)
        properties.update(
            {
                ALL_FIELD: {"type": "text"},
                QUERY_FIELD: {"type": "percolator"},
                ID_FIELD: {"type": "keyword"},
                META_FIELD: {"type": "object", "enabled": False},
            }
        )
        body = {
            "settings": {
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
            if e.type != "resource_already_exists_exception":  # created meanwhile by another call
                raise
            return await self._ensure_index(index)
        return set(_field_names(properties))

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
    """Not a name the engine accepts for an index."""


def check_index(index: Any) -> str:
    """Return ``index`` if the engine accepts it as an index name; raise InvalidIndex if not."""
    if not isinstance(index, str) or not index:
        raise InvalidIndex("the index name is missing")
    if index != index.lower():
        raise InvalidIndex(f"index name '{index}' must be lowercase")
    if index in (".", "..") or index[0] in "-_+":
        raise InvalidIndex(f"index name '{index}' must not be '.', '..' or start with '-', '_', '+'")
    if _FORBIDDEN_IN_INDEX & set(index):
        raise InvalidIndex(f"index name '{index}' must not contain any of \\ / * ? \" < > | , # : or a space")
    if len(percolator_index(index).encode("utf-8")) > 255:
        raise InvalidIndex("the index name is too long")
    return index
