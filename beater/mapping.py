"""Making percolator indexes, and keeping their mappings in step with what they percolate.

A stored query must match exactly what the engine's own search of the source index would find:

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger

from beater.engine import Engine, EngineError, EngineUnavailable, path
from beater.fields import searched_fields
from beater.identity import Identified
from beater.indexes import (
    ALL_FIELD,
    HIGHLIGHT_FIELD,
    ID_FIELD,
    META_FIELD,
    META_KEY,
    PREFIX,
    QUERY_FIELD,
    SEEN_FIELD,
    TAKEN_OUT_FIELD,
    indexes_of,
    log_failed_items,
    percolator_index,
    replica_settings,
    versioned,
)
from beater.validation import InvalidQuery
from estrom.coalesce import Coalesce

log = Logger()

_FIELDS_FOLLOWED = 10_000  # field paths remembered per index (the engine's default limit is 1,000)
_MAPPING_ATTEMPTS = 5  # registrations at the same time may map the same new fields
_STORE_AGAIN_ROUNDS = 3  # of storing again the queries changed while they were stored again


class TooManyIndexes(Exception):
    """There are as many percolator indexes as there may be, and this one would be new."""


@dataclass(frozen=True)
class Made:
    """How a percolator index was made: after a source index (``source``) or not, the default
    fields of its queries, and the field paths it has mapped."""

    source: bool
    default_fields: list[str]
    known: set[str]


class Mappings:
    """Makes the percolator index of a source index, and keeps its mapping in step: with the
    source index's, with the fields of the documents stored in it, or with the fields the
    queries name (when there is no source index)."""

    def __init__(self, engine: Engine, replicas: str = "0-1", max_indexes: int = 100):
        self.engine = engine
        self.replicas = replicas  # of each percolator index: a count, or auto-expanded ("0-1")
        # Percolator indexes at most: each GET of a stream on a new index name would make one.
        self.max_indexes = max_indexes
        self._creating = DeferredLock()  # one percolator index counted and made at a time
        self._ensuring = Coalesce()  # by source index
        # By source index: the field paths of stored documents its percolator index followed.
        self._followed: dict[str, set[str]] = {}
        self._serving_indexes: set[str] = set()  # percolator indexes seen with a started primary
        self._highlight_mapped: set[str] = set()  # indexes whose percolator index maps HIGHLIGHT_FIELD
        # Indexes whose queries were not all stored again after their mapping grew.
        self._store_again_pending: set[str] = set()
        # Called with ("bulk_item", count) for items of its bulk requests the engine refused.
        self.failed: Callable[[str, int], Any] = lambda what, count: None
        # Called with an index whose percolator index's mapping this changed.
        self.remapped: Callable[[str], Any] = lambda index: None

    def ensure(self, index: str) -> Deferred[Made]:
        """Create the percolator index of ``index`` unless it exists; fires with how it is made.
        Calls for one index at once share its creation: until its primary shard has started,
        the engine answers 503 for what is in it."""
        return self._ensuring.run(index, lambda: Deferred.fromCoroutine(self._ensure(index)))

    async def _ensure(self, index: str) -> Made:
        """Create the percolator index of ``index`` unless it exists; how it is made."""
        name = percolator_index(index)
        made = await self.made(index)
        if made is not None:
            await self.serving(name)
            return made
        await self._creating.acquire()
        try:
            return await self._create(index)
        finally:
            self._creating.release()

    async def room_for(self, index: str) -> None:
        """Raise TooManyIndexes if the percolator index of ``index`` would be new, and there
        are as many as there may be."""
        if await self.made(index) is not None:
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

    async def _create(self, index: str) -> Made:
        """Make the percolator index of ``index``, if there may be one more and it is still
        not there (counted and made under ``_creating``)."""
        name = percolator_index(index)
        made = await self.made(index)
        if made is not None:
            await self.serving(name)
            return made
        await self.room_for(index)
        body = await self._source_copy(index) or _without_source()
        body["settings"].update(replica_settings(self.replicas))
        body["settings"]["index.percolator.map_unmapped_fields_as_text"] = True
        body["mappings"].setdefault("properties", {}).update(
            {
                QUERY_FIELD: {"type": "percolator"},
                ID_FIELD: {"type": "keyword"},
                META_FIELD: {"type": "object", "enabled": False},
                SEEN_FIELD: {"type": "long"},
                TAKEN_OUT_FIELD: TAKEN_OUT_MAPPING,
                HIGHLIGHT_FIELD: HIGHLIGHT_MAPPING,
            }
        )
        try:
            await self.engine.request("PUT", path(name), body)
        except EngineError as e:
            if e.type != "resource_already_exists_exception":
                raise
            await self.serving(name)  # created meanwhile by another Beater
            made = await self.made(index)
            if made is None:
                raise EngineUnavailable(
                    f"the percolator index of '{index}' was made and removed meanwhile"
                ) from e
            return made
        await self.serving(name)
        return _made_of(body["mappings"])

    async def made(self, index: str) -> Made | None:
        """How the percolator index of ``index`` was made, or None if there is none."""
        name = percolator_index(index)
        try:
            answer = await self.engine.request("GET", path(name, "_mapping"))
        except EngineError as e:
            if e.status == 404:
                return None
            raise
        return _made_of(answer[name]["mappings"])

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

    async def follow_source(self, index: str, made: Made) -> bool:
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

    async def follow_sources(self, patterns: tuple[str, ...] = ("*",)) -> int:
        """Bring the percolator indexes of ``patterns``' source indexes in step with their
        sources' mappings (see follow_source); fires with how many had grown."""
        answer = await self.engine.request(
            "GET",
            f"/{indexes_of(patterns)}/_mapping",
            params={"ignore_unavailable": "true", "allow_no_indices": "true"},
        )
        grown = 0
        for name, mapping in sorted(answer.items()):
            made = _made_of(mapping.get("mappings", {}))
            if made.source and name.startswith(PREFIX):
                grown += await self.follow_source(name[len(PREFIX) :], made)
        return grown

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
        made = await self.made(index)
        if made is not None and made.source:
            await self.follow_source(index, made)
        self._followed.setdefault(index, set()).update(fields)

    async def mapped_for_highlights(self, index: str) -> None:
        """HIGHLIGHT_FIELD mapped in the percolator index of ``index``, made before it was (a
        percolation asks for it unmapped there: the engine gives nothing for it)."""
        if index in self._highlight_mapped:
            return
        try:
            await self.engine.request(
                "PUT",
                path(percolator_index(index), "_mapping"),
                {"properties": {HIGHLIGHT_FIELD: HIGHLIGHT_MAPPING}},
            )
        except EngineError as e:
            if e.type != "index_not_found_exception":
                raise
            return
        self._highlight_mapped.add(index)

    async def map_fields(self, query: Identified, known: set[str]) -> None:
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
        answered = await self.engine.bulk_items([[versioned("index", hit), hit["_source"]] for hit in hits])
        ids = [hit["_id"] for hit in hits]
        conflicts = [ids[r.position] for r in answered if r.status == 409]
        changed += conflicts
        refused = [r for r in answered if r.status not in (404, 409)]
        log_failed_items(self.failed, f"store again under the new mapping of {index!r}", refused, ids)
        return len(hits) - len(conflicts) - len(refused), len(refused)

    async def serving(self, name: str) -> None:
        """Wait until an index's primary shard has started, the first time this Beater uses it:
        until then the engine answers 503 ("shard state RECOVERING") to what comes next, also to
        another Beater that finds the index just created."""
        if name in self._serving_indexes:
            return
        await self.engine.request(
            "GET", path("_cluster", "health", name), params={"wait_for_status": "yellow", "timeout": "30s"}
        )
        self._serving_indexes.add(name)


TAKEN_OUT_MAPPING = {"type": "keyword"}
HIGHLIGHT_MAPPING = {"type": "keyword"}


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


def _made_of(mappings: dict[str, Any]) -> Made:
    """How a percolator index was made, from its mappings (indexes made before ``_meta`` was
    written were made without a source, with ``estrom_all``)."""
    meta = mappings.get("_meta", {}).get(META_KEY, {})
    return Made(
        source=bool(meta.get("source", False)),
        default_fields=list(meta.get("default_fields", [ALL_FIELD])),
        known=set(_field_names(mappings.get("properties", {}))),
    )
