"""The store (``ESTROM_STORE``): documents indexed into the engine under their own index as well,
each with its cursor in ``estrom_cursor``, and read back as a stream's backlog.

A batch is stored with one bulk request while it is percolated, and published only once both
are done: a sender's 2xx means stored and published. The engine's own search reads the backlog
(the stream's query, on the source index), so it shows what a search would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from beater.documents import CBOR_PER_JSON_BYTE
from beater.engine import Engine, EngineError, EngineUnavailable, path
from beater.percolator import HIGHLIGHT
from estrom import api
from estrom.coalesce import Coalesce
from estrom.cursor import cursor_iso

log = Logger()

FIELD = "estrom_cursor"
_MAPPING = {"properties": {FIELD: {"type": "keyword"}}}
# When Beater makes the index: numbers with a fraction mapped as doubles, not the engine's default
# floats, so that statistics of stored documents (beater.summary) are those of the live hits.
_NEW_MAPPING = {
    **_MAPPING,
    "dynamic_templates": [
        {"estrom_doubles": {"match_mapping_type": "double", "mapping": {"type": "double"}}}
    ],
}
PAGE_HITS = 500  # hits in one backlog page, at most
PAGE_BYTES = 4 * 1024 * 1024  # and at most this many bytes of them (the router's limit is 16 MiB)
REFRESH_EVERY = 0.2  # seconds between forced refreshes of an index, at least
IN_FLIGHT = 2_000  # documents of this Beater's batches in flight a backlog may have to skip
PAGE_FIRST = 20  # documents asked of the engine first for a page: their size sets how many next
# Seconds between tries to remove the copies of a batch not published, at first and at most; and
# how many such batches wait at once (past it, their copies stay, logged and counted).
REMOVE_FIRST, REMOVE_MOST = 0.5, 10.0
MAX_REMOVING = 10_000

# Elastic's data stream naming, <type>-<dataset>-<namespace> (neither of the last two holds a
# dash): where shippers of the Elastic world write. With the store, such an index is a data stream
# in the engine where the engine has them: the one an index template makes, or Beater's template
# (TEMPLATE) when none matches. Documents go in with `create`, with the `@timestamp` a data stream
# requires (the time Beater took them, when they have none).
DATA_STREAM = re.compile(r"(?:logs|metrics|traces)-[^-]+-[^-]+")
TEMPLATE = "estrom-data-streams"
TIMESTAMP = "@timestamp"
_TEMPLATE = {
    "index_patterns": ["logs-*-*", "metrics-*-*", "traces-*-*"],
    "data_stream": {},
    "priority": 1,  # below any an operator makes for these names
    "template": {
        "mappings": {**_NEW_MAPPING, "properties": {**_MAPPING["properties"], TIMESTAMP: {"type": "date"}}}
    },
    "_meta": {"description": "made by estrom's Beater for data streams no other template matched"},
}


@dataclass(frozen=True)
class Written:
    """A document version ``put`` wrote, and the index it is in (a data stream's backing index)."""

    index: str
    id: str
    seq_no: int | None
    primary_term: int | None


# What the engine says when a document cannot be stored for what it holds: the sender's fault.
_DOCUMENT_ERRORS = {
    "mapper_parsing_exception",
    "document_parsing_exception",
    "strict_dynamic_mapping_exception",
    "illegal_argument_exception",
}


def _document_error(status: int, error: Any) -> str | None:
    """Why the engine refused a bulk item for what its document holds, or None if that is not
    why (the sender cannot mend it)."""
    kind = error.get("type") if isinstance(error, dict) else None
    if status != 400 or kind not in _DOCUMENT_ERRORS:
        return None
    # The outermost reason names the field; the innermost says what is wrong with its value.
    reasons = [error.get("reason", "")]
    cause = error.get("caused_by")
    while isinstance(cause, dict):
        reasons.append(cause.get("reason", ""))
        cause = cause.get("caused_by")
    said = ": ".join(dict.fromkeys(reason for reason in (reasons[0], reasons[-1]) if reason))
    return said or str(kind)


def _unavailable(status: int, error: Any, index: str) -> EngineUnavailable:
    """The exception for a bulk item the engine did not store, not for what it holds."""
    kind = error.get("type") if isinstance(error, dict) else None
    reason = error.get("reason", "") if isinstance(error, dict) else str(error)
    if status not in (429, 503):
        log.warn(
            "Beater: the search engine refuses to store in {index}: {status} {kind}: {reason}",
            index=index,
            status=status,
            kind=kind,
            reason=reason,
        )
    return EngineUnavailable(
        f"the search engine could not store documents now ({status} {kind}: {reason})", status
    )


@dataclass
class Page:
    hits: list[dict]
    next: dict[str, str] | None  # what to ask for the next page, or None: this was the last
    gap: bool  # more hits match than a backlog holds: the oldest of them are left out


class Store:
    def __init__(self, engine: Engine, max_backlog: int = 10_000, clock: IReactorTime = default_reactor):
        self.engine = engine
        self.max_backlog = max_backlog
        self._clock = clock
        self._refreshed: dict[str, float] = {}  # by index: when the last refresh started
        self._ready: set[str] = set()  # indexes known to exist with the cursor's mapping
        self.streams: set[str] = set()  # those of them that are data streams
        self._ensuring = Coalesce()
        self._waiting: dict[str, list[Deferred]] = {}  # by index: callers for the next refresh
        self._refreshing: set[str] = set()  # indexes with a refresh under way
        # Called with ("bulk_item", count) for copies the engine would not remove (Beater counts
        # them in its metrics).
        self.failed: Callable[[str, int], Any] = lambda what, count: None
        # By index: the (first, last) cursors of batches whose copies wait to be removed.
        self.removing: dict[str, set[tuple[str, str]]] = {}

    async def ensure(self, index: str) -> None:
        """Make ``index`` (with the engine's defaults and templates) unless it exists, and map
        the cursor in it."""
        if index not in self._ready:
            await self._ensuring.run(index, lambda: Deferred.fromCoroutine(self._ensure(index)))

    async def _ensure(self, index: str) -> None:
        if DATA_STREAM.fullmatch(index) and await self._data_stream(index):
            await self.engine.request("PUT", path(index, "_mapping"), _MAPPING)
            self.streams.add(index)
            self._ready.add(index)
            return
        try:
            await self.engine.request("PUT", path(index), {"mappings": _NEW_MAPPING})
        except EngineError as e:
            if e.type != "resource_already_exists_exception":
                raise
            await self.engine.request("PUT", path(index, "_mapping"), _MAPPING)
        self._ready.add(index)

    async def _data_stream(self, index: str) -> bool:
        """Whether ``index`` is (now) a data stream: made unless it exists, with TEMPLATE if no
        index template matches it. False where the engine has no data streams (Elasticsearch 7
        without X-Pack), or ``index`` is an index already, or a template makes it one."""
        try:
            await self.engine.request("PUT", path("_data_stream", index))
            return True
        except EngineError as e:
            if e.type == "resource_already_exists_exception":
                return await self._is_data_stream(index)
            if e.status == 405 or "no matching index template" not in e.reason:
                return False  # no data streams here, or an index template says otherwise
        try:
            await self.engine.request("PUT", path("_index_template", TEMPLATE), _TEMPLATE, {"create": "true"})
            log.info(
                "Beater: made the index template {template} for data streams ({patterns})",
                template=TEMPLATE,
                patterns=", ".join(_TEMPLATE["index_patterns"]),
            )
        except EngineError as e:
            if "already exists" not in e.reason:  # another Beater's, made meanwhile
                raise
        try:
            await self.engine.request("PUT", path("_data_stream", index))
        except EngineError as e:
            if e.type != "resource_already_exists_exception":
                raise
        return True

    async def _is_data_stream(self, index: str) -> bool:
        try:
            answer = await self.engine.request("GET", path("_data_stream", index))
        except EngineError:
            return False
        return any(stream.get("name") == index for stream in answer.get("data_streams", ()))

    async def put(
        self, index: str, documents: list[dict], ids: list[str], cursors: list[str]
    ) -> list[Written]:
        """Index ``documents`` with their IDs and cursors, in one bulk request; what was written.

        Raises EngineUnavailable if the engine could not take a document now, or refuses to store
        at all (a block, rights, an alias); else EngineError if it refused documents for what
        they hold (the sender's fault), with ``refused``: why, by position. Either carries
        ``written``, what was stored nonetheless.
        """
        try:
            await self.ensure(index)
            stream = index in self.streams
            action = "create" if stream else "index"
            lines = []
            for document, document_id, cursor in zip(documents, ids, cursors, strict=True):
                lines.append({action: {"_index": index, "_id": document_id}})
                if stream and TIMESTAMP not in document:
                    lines.append({**document, TIMESTAMP: cursor_iso(cursor), FIELD: cursor})
                else:
                    lines.append({**document, FIELD: cursor})
            answer = await self.engine.bulk(lines)
        except EngineError as e:  # the whole request, refused: not about one document
            refused = EngineUnavailable(f"the search engine refuses to store in '{index}': {e}", e.status)
            refused.written = []
            raise refused from e
        written: list[Written] = []
        refused: dict[int, str] = {}  # documents refused for what they hold
        unavailable = None
        for position, item in enumerate(answer.get("items", [])):
            result = next(iter(item.values()))
            status = result.get("status", 500)
            if status < 300:
                written.append(
                    Written(
                        result.get("_index", index),
                        result.get("_id"),
                        result.get("_seq_no"),
                        result.get("_primary_term"),
                    )
                )
            elif status == 409 and stream:
                pass  # a resend of a document the sender named, stored before: that copy stays
            else:
                why = _document_error(status, result.get("error"))
                if why is not None:
                    refused[position] = why
                elif unavailable is None:
                    unavailable = _unavailable(status, result.get("error"), index)
        if unavailable is None and refused:
            first = min(refused)
            kind = next(iter(answer["items"][first].values()))["error"]["type"]
            unavailable = EngineError(
                400, {"error": {"type": kind, "reason": f"document {first}: {refused[first]}"}}
            )
            unavailable.refused = refused
        if unavailable is not None:
            unavailable.written = written
            raise unavailable
        return written

    async def remove(self, index: str, written: list[Written] | None, cursors: list[str]) -> None:
        """Delete what ``put`` wrote of a batch (its ``cursors``) that was then not published: its
        sender hears it was not taken and sends it again. Only those versions: a document written
        since stays. ``written`` None: what the engine did is not known (it may have written the
        batch without answering), so the copies are found by their cursors instead.

        If the engine cannot now, the removal is tried again until it can, and meanwhile this
        Beater's backlogs leave the batch out (``removing``): a stream that resumes while the
        engine is away gets the sender's resend, not these copies as well."""
        if not cursors or written == []:
            return
        batch, count = (cursors[0], cursors[-1]), len(cursors)
        try:
            await self._remove(index, written, batch, count)
        except EngineUnavailable as e:
            self._remove_later(index, written, batch, count, str(e))
        except EngineError as e:  # refused outright: trying again will not mend it
            self._stay(index, count, str(e))

    async def _remove(
        self, index: str, written: list[Written] | None, batch: tuple[str, str], count: int
    ) -> None:
        """Raises EngineUnavailable (or EngineError) while the engine cannot remove the copies."""
        if written is None:  # the copies of the batch, whichever: no other batch has its cursors
            await self.refresh(index)
            answer = await self._search(
                index,
                {"match_all": {}},
                {"gte": batch[0], "lte": batch[1]},
                {"size": count, "_source": False, "seq_no_primary_term": True, "track_total_hits": False},
            )
            found = answer["hits"]["hits"] if answer is not None else []
            written = [
                Written(hit["_index"], hit["_id"], hit.get("_seq_no"), hit.get("_primary_term"))
                for hit in found
            ]
        actions = [
            {
                "delete": {
                    "_index": w.index,  # a data stream's backing index: it takes no delete itself
                    "_id": w.id,
                    "if_seq_no": w.seq_no,
                    "if_primary_term": w.primary_term,
                }
            }
            for w in written
            if w.seq_no is not None and w.primary_term is not None
        ]
        if not actions:
            return
        refused = await self.engine.bulk_items([[action] for action in actions])
        # 404 and 409: removed, or written again, since: not these copies any more.
        refused = [r for r in refused if r.status not in (404, 409)]
        if any(r.status == 429 or r.status >= 500 for r in refused):
            raise EngineUnavailable(f"the search engine did not remove copies now: {refused[0]}")
        if refused:
            self._stay(index, len(refused), str(refused[0]))

    def _remove_later(
        self, index: str, written: list[Written] | None, batch: tuple[str, str], count: int, error: str
    ) -> None:
        if sum(map(len, self.removing.values())) >= MAX_REMOVING:
            self._stay(index, count, error)
            return
        removing = self.removing.setdefault(index, set())
        removing.add(batch)
        log.warn(
            "Beater: the search engine could not remove the copies of a batch not published from "
            "{index} ({error}); trying again until it can",
            index=index,
            error=error,
        )

        async def again() -> None:
            wait = REMOVE_FIRST
            while True:
                await deferLater(self._clock, wait, lambda: None)
                try:
                    await self._remove(index, written, batch, count)
                except EngineUnavailable:
                    wait = min(2 * wait, REMOVE_MOST)
                    continue
                except EngineError as e:
                    self._stay(index, count, str(e))
                except Exception:  # noqa: BLE001 - a bug: said, and the copies stay
                    log.failure("Beater: removing copies from {index}", index=index)
                break
            removing.discard(batch)
            if not removing and self.removing.get(index) is removing:
                del self.removing[index]

        Deferred.fromCoroutine(again())

    def removing_cursor(self, index: str, cursor: str) -> bool:
        """Whether ``cursor`` is of a batch whose copies in ``index`` wait to be removed."""
        return any(first <= cursor <= last for first, last in self.removing.get(index, ()))

    def _stay(self, index: str, count: int, error: str) -> None:
        self.failed("bulk_item", count)
        log.warn(
            "Beater: {count} documents stored but not published stay in {index}: {error}",
            count=count,
            index=index,
            error=error,
        )

    def refresh(self, index: str) -> Deferred[None]:
        """Make every document stored before this call visible to search: fire once a refresh
        that started after the call is done. Callers while one runs share the next one."""
        done: Deferred[None] = Deferred()
        self._waiting.setdefault(index, []).append(done)
        if index not in self._refreshing:
            self._refresh(index)
        return done

    def _refresh(self, index: str) -> None:
        waiters = self._waiting.pop(index)
        self._refreshing.add(index)
        # At most one forced refresh per REFRESH_EVERY per index, however many streams open:
        # each makes a new segment of what was indexed since.
        wait = self._refreshed.get(index, float("-inf")) + REFRESH_EVERY - self._clock.seconds()

        def finished(result: Any) -> None:
            self._refreshing.discard(index)
            for waiter in waiters:
                waiter.errback(result) if isinstance(result, Failure) else waiter.callback(None)
            if index in self._waiting:
                self._refresh(index)

        def start(_: Any) -> Deferred:
            self._refreshed[index] = self._clock.seconds()
            return Deferred.fromCoroutine(
                self.engine.request("POST", path(index, "_refresh"), params={"ignore_unavailable": "true"})
            )

        deferLater(self._clock, max(0.0, wait), lambda: None).addCallback(start).addBoth(finished)

    async def backlog(
        self,
        index: str,
        clause: dict[str, Any],
        last: int | None = None,
        after: str | None = None,
        since: str | None = None,
        page: dict[str, str] | None = None,
        unpublished: Callable[[str], bool] = lambda cursor: False,
        highlight: bool = False,
    ) -> Page:
        """The first page of the backlog of a query (``clause``, on ``index``), or the page that
        ``page`` (a previous Page's ``next``) names. Oldest first.

        The backlog is the last ``last`` (at most ``max_backlog``) matching documents with a
        cursor greater than ``after`` and at least ``since`` (a cursor). Fire after a refresh, so
        that it holds every document published before the call. Documents stored but not yet
        published (``unpublished(cursor)``, as far as this Beater knows: its own batches in
        flight) are left out: they arrive live, in cursor order, and one that fails to publish
        is deleted again. With ``highlight``, each hit has the engine's highlights of what
        matched (api.HIGHLIGHT), as live hits of such a query have.
        """
        if page is not None:
            return await self._page(
                index, clause, {"gt": page["after"], "lte": page["until"]}, False, unpublished, highlight
            )
        await self.refresh(index)
        bounds: dict[str, str] = {}
        if after is not None:
            bounds["gt"] = after
        if since is not None and (after is None or since > after):
            bounds = {"gte": since}
        wanted = min(last or self.max_backlog, self.max_backlog)
        # Newest first, cursors only: where the backlog starts and ends.
        answer = await self._search(
            index,
            clause,
            bounds,
            {
                "sort": [{FIELD: "desc"}],
                # and room for this Beater's batches in flight, which are left out
                "size": min(wanted + IN_FLIGHT, 10_000),
                "_source": False,
                "track_total_hits": wanted + IN_FLIGHT + 1,
            },
        )
        if answer is None:
            return Page([], None, False)
        found = answer["hits"]["hits"]
        published = [hit["sort"][0] for hit in found if not unpublished(hit["sort"][0])]
        cursors = published[:wanted]
        if not cursors:
            return Page([], None, False)
        total = answer["hits"]["total"]
        matched = (total["value"] if isinstance(total, dict) else total) - (len(found) - len(published))
        more = matched > len(cursors)
        bounds = {"gte": cursors[-1], "lte": cursors[0]}
        return await self._page(index, clause, bounds, more and last is None, unpublished, highlight)

    async def _page(
        self,
        index: str,
        clause: dict[str, Any],
        bounds: dict[str, str],
        gap: bool,
        unpublished: Callable[[str], bool],
        highlight: bool = False,
    ) -> Page:
        """One page from ``bounds``: up to PAGE_HITS hits and about PAGE_BYTES as Beater sends
        them (CBOR, counted at its most), a hit larger than that alone. Asked of the engine a few
        at a time at first, then as many as the largest seen leaves room for: a store of large
        documents never has Beater read hundreds of them at once."""
        until = bounds["lte"]
        hits: list[dict] = []
        size, fetch, range_ = 0, PAGE_FIRST, dict(bounds)
        marks = (
            {"highlight": {**HIGHLIGHT, "require_field_match": True, "fields": {"*": {}}}}
            if highlight
            else {}
        )
        while True:
            answer = await self._search(
                index,
                clause,
                range_,
                {"sort": [{FIELD: "asc"}], "size": fetch, "track_total_hits": False, **marks},
            )
            found = answer["hits"]["hits"] if answer is not None else []
            largest = 1
            for position, hit in enumerate(found):
                source = dict(hit["_source"])
                cursor = source.pop(FIELD, None)
                if unpublished(cursor):
                    continue
                weight = len(json.dumps(source)) * CBOR_PER_JSON_BYTE * (2 if highlight else 1) + 128
                largest = max(largest, weight)
                if hits and size + weight > PAGE_BYTES:
                    return Page(hits, {"after": hits[-1]["_cursor"], "until": until}, gap)
                found_hit = {"_index": index, "_id": hit["_id"], "_cursor": cursor, "_source": source}
                shown = {k: v for k, v in hit.get("highlight", {}).items() if not k.startswith("estrom_")}
                if shown:
                    found_hit[api.HIGHLIGHT] = shown
                hits.append(found_hit)
                size += weight
                if len(hits) >= PAGE_HITS:
                    done = position == len(found) - 1 and len(found) < fetch
                    return Page(hits, None if done else {"after": cursor, "until": until}, gap)
            if len(found) < fetch:
                return Page(hits, None, gap)
            range_ = {"gt": found[-1]["sort"][0], "lte": until}
            fetch = max(1, min(PAGE_HITS - len(hits), (PAGE_BYTES - size) // largest))

    async def _search(
        self, index: str, clause: dict[str, Any], bounds: dict[str, str], body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A search of ``index`` for ``clause`` among the documents with a cursor in ``bounds``;
        None if there is no such index."""
        cursor = {"range": {FIELD: bounds}} if bounds else {"exists": {"field": FIELD}}
        try:
            return await self.engine.request(
                "POST", path(index, "_search"), {"query": {"bool": {"filter": [clause, cursor]}}, **body}
            )
        except EngineError as e:
            if e.type == "index_not_found_exception":
                return None
            raise
