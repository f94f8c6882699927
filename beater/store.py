"""The store (``ESTROM_STORE``): documents indexed into the engine under their own index as well,
each with its cursor in ``estrom_cursor``, and read back as a stream's backlog.

A batch is stored with one bulk request while it is percolated, and published only once both
are done: a sender's 2xx means stored and published. The engine's own search reads the backlog
(the stream's query, on the source index), so it shows what a search would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from beater.engine import Engine, EngineError, EngineUnavailable, path
from estrom.coalesce import Coalesce

log = Logger()

FIELD = "estrom_cursor"
_MAPPING = {"properties": {FIELD: {"type": "keyword"}}}
PAGE_HITS = 500  # hits in one backlog page, at most
PAGE_BYTES = 4 * 1024 * 1024  # and about this many bytes of them (the router's limit is 16 MiB)


@dataclass
class Page:
    hits: list[dict]
    next: dict[str, str] | None  # what to ask for the next page, or None: this was the last
    gap: bool  # more hits match than a backlog holds: the oldest of them are left out


class Store:
    def __init__(self, engine: Engine, max_backlog: int = 10_000):
        self.engine = engine
        self.max_backlog = max_backlog
        self._ready: set[str] = set()  # indexes known to exist with the cursor's mapping
        self._ensuring = Coalesce()
        self._waiting: dict[str, list[Deferred]] = {}  # by index: callers for the next refresh
        self._refreshing: set[str] = set()  # indexes with a refresh under way

    async def ensure(self, index: str) -> None:
        """Make ``index`` (with the engine's defaults and templates) unless it exists, and map
        the cursor in it."""
        if index not in self._ready:
            await self._ensuring.run(index, lambda: Deferred.fromCoroutine(self._ensure(index)))

    async def _ensure(self, index: str) -> None:
        try:
            await self.engine.request("PUT", path(index), {"mappings": _MAPPING})
        except EngineError as e:
            if e.type != "resource_already_exists_exception":
                raise
            await self.engine.request("PUT", path(index, "_mapping"), _MAPPING)
        self._ready.add(index)

    async def put(self, index: str, documents: list[dict], ids: list[str], cursors: list[str]) -> None:
        """Index ``documents`` with their IDs and cursors, in one bulk request.

        Raises EngineError with the engine's reason for the first document it refused (the
        sender's fault), EngineUnavailable if it could not take one now; those it took stay.
        """
        await self.ensure(index)
        lines = []
        for document, document_id, cursor in zip(documents, ids, cursors):
            lines.append({"index": {"_index": index, "_id": document_id}})
            lines.append({**document, FIELD: cursor})
        answer = await self.engine.bulk(lines)
        if not answer.get("errors"):
            return
        for position, item in enumerate(answer["items"]):
            result = next(iter(item.values()))
            status = result.get("status", 500)
            if status < 300:
                continue
            if status == 429 or status >= 500:
                raise EngineUnavailable(f"the search engine could not store documents now ({status})", status)
            error = result.get("error", {})
            if isinstance(error, dict):
                error = {**error, "reason": f"document {position}: {error.get('reason', '')}"}
            raise EngineError(status, {"error": error})

    async def remove(self, index: str, ids: list[str]) -> None:
        """Delete what ``put`` stored of a batch that was then not published: its sender hears
        it was not taken and sends it again. If the engine cannot, the copies stay (logged)."""
        try:
            await self.engine.bulk([{"delete": {"_index": index, "_id": i}} for i in ids])
        except (EngineUnavailable, EngineError) as e:
            log.warn(
                "Beater: {count} documents stored but not published stay in {index}: {error}",
                count=len(ids),
                index=index,
                error=e,
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

        def finished(result: Any) -> None:
            self._refreshing.discard(index)
            for waiter in waiters:
                waiter.errback(result) if isinstance(result, Failure) else waiter.callback(None)
            if index in self._waiting:
                self._refresh(index)

        refreshed = Deferred.fromCoroutine(
            self.engine.request("POST", path(index, "_refresh"), params={"ignore_unavailable": "true"})
        )
        refreshed.addBoth(finished)

    async def backlog(
        self,
        index: str,
        clause: dict[str, Any],
        last: int | None = None,
        after: str | None = None,
        since: str | None = None,
        page: dict[str, str] | None = None,
    ) -> Page:
        """The first page of the backlog of a query (``clause``, on ``index``), or the page that
        ``page`` (a previous Page's ``next``) names. Oldest first.

        The backlog is the last ``last`` (at most ``max_backlog``) matching documents with a
        cursor greater than ``after`` and at least ``since`` (a cursor). Fire after a refresh, so
        that it holds every document published before the call.
        """
        if page is not None:
            return await self._page(index, clause, {"gt": page["after"], "lte": page["until"]}, False)
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
                "size": wanted,
                "_source": False,
                "track_total_hits": wanted + 1,
            },
        )
        if answer is None:
            return Page([], None, False)
        hits = answer["hits"]["hits"]
        if not hits:
            return Page([], None, False)
        total = answer["hits"]["total"]
        more = (total["value"] if isinstance(total, dict) else total) > len(hits)
        start, until = hits[-1]["sort"][0], hits[0]["sort"][0]
        return await self._page(index, clause, {"gte": start, "lte": until}, more and last is None)

    async def _page(self, index: str, clause: dict[str, Any], bounds: dict[str, str], gap: bool) -> Page:
        answer = await self._search(
            index, clause, bounds, {"sort": [{FIELD: "asc"}], "size": PAGE_HITS, "track_total_hits": False}
        )
        found = answer["hits"]["hits"] if answer is not None else []
        hits, size = [], 0
        for hit in found:
            source = dict(hit["_source"])
            cursor = source.pop(FIELD)
            hits.append({"_index": index, "_id": hit["_id"], "_cursor": cursor, "_source": source})
            size += len(json.dumps(source))
            if size >= PAGE_BYTES:
                break
        last_page = len(hits) == len(found) and len(found) < PAGE_HITS
        until = bounds["lte"]
        following = None if last_page or not hits else {"after": hits[-1]["_cursor"], "until": until}
        return Page(hits, following, gap)

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
