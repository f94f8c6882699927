"""The sweep's work on stored queries: recording which are in use, removing those nobody used for
a while, and the lease that lets one Beater at a time do the removing (beater.service sweeps)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.interfaces import IReactorTime

from beater.engine import Engine, EngineError, path
from beater.indexes import SEEN_FIELD, indexes_of, log_failed_items, replica_settings, versioned

# Leases of the work one Beater at a time does (the sweep): no index a sender can name starts
# with "." (check_index), nor is it a percolator index.
LEASES = ".estrom-leases"


class Sweep:
    """Records use of stored queries, removes unused ones, and holds the sweep's lease."""

    def __init__(self, engine: Engine, replicas: str = "0-1", clock: IReactorTime = default_reactor):
        self.engine = engine
        self.replicas = replicas  # of LEASES
        self._clock = clock
        # Called with ("bulk_item", count) for items of its bulk requests the engine refused.
        self.failed: Callable[[str, int], Any] = lambda what, count: None

    async def mark_seen(self, query_ids: list[str], patterns: tuple[str, ...] = ("*",)) -> int:
        """Record that ``query_ids`` are in use now; fires with how many were found."""
        now = int(self._clock.seconds())
        marked = 0
        for start in range(0, len(query_ids), 1000):
            chunk = query_ids[start : start + 1000]
            answer = await self.engine.request(
                "POST",
                f"/{indexes_of(patterns)}/_search",
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
            log_failed_items(self.failed, "record as in use", failed, [hit["_id"] for hit in hits])
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
                f"/{indexes_of(patterns)}/_search",
                {"query": query, "_source": False, "size": 1000, "seq_no_primary_term": True},
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
            )
            hits = answer["hits"]["hits"]
            if not hits:
                return removed
            refused = await self.engine.bulk_items([[versioned("delete", hit)] for hit in hits])
            # 409: changed since the search (in use again); 404: removed by another sweep.
            log_failed_items(
                self.failed,
                "remove",
                [r for r in refused if r.status not in (404, 409)],
                [h["_id"] for h in hits],
            )
            await self.engine.request(
                "POST",
                f"/{indexes_of(patterns)}/_refresh",
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
            )
            gone = len(hits) - len(refused)
            removed += gone
            if not gone and all(r.status != 409 for r in refused):
                return removed  # the engine removes none of these: searching again finds them again

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
                    "settings": {**replica_settings(self.replicas), "index.hidden": True},
                    "mappings": {"dynamic": False, "properties": {"holder": {"type": "keyword"}}},
                },
            )
        except EngineError as e:
            if e.type != "resource_already_exists_exception":
                raise
        return None
