"""Beater's WAMP side: the ``estrom.register`` / ``estrom.lookup`` procedures, and publishing
the hits of each percolation to ``docs-for-<ID>``."""

from __future__ import annotations

import uuid
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions
from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.logger import Logger

from beater.engine import EngineError, EngineUnavailable
from beater.identity import InvalidQuery, identify
from beater.interest import Interest
from beater.percolator import InvalidIndex, Percolator, check_index
from beater.pipeline import Pipeline, Rejected
from estrom import api

log = Logger()


class RouterUnavailable(Exception):
    """Beater is not connected to the router, or a publication was not acknowledged."""


class Beater:
    """Registers queries and delivers the documents that match them."""

    def __init__(
        self,
        percolator: Percolator,
        batching: dict[str, Any] | None = None,
        interest: Interest | None = None,
        one_by_one: bool = False,
    ):
        self.percolator = percolator
        self.pipeline = Pipeline(self.deliver, **(batching or {}))
        self.interest = interest  # None: percolate every stored query
        self.one_by_one = one_by_one
        self.session = None  # the joined WAMP session, or None

    async def on_join(self, session, details) -> None:
        # Several Beaters may serve one router: calls are shared out among them.
        options = RegisterOptions(invoke="roundrobin")
        await session.register(self.register, api.REGISTER, options=options)
        await session.register(self.lookup, api.LOOKUP, options=options)
        if self.interest is not None:
            await self.interest.follow(session)
        self.session = session
        log.info("Beater joined realm {realm} as {authid}", realm=details.realm, authid=details.authid)

    def on_leave(self, session, details) -> None:
        self.session = None
        log.warn("Beater left the router: {reason}", reason=details.reason)

    async def register(self, index: Any, query: Any) -> str:
        """WAMP ``estrom.register(index, query) -> id``."""
        try:
            identified = identify(check_index(index), query)
            await self.percolator.store(identified)
            if self.interest is not None:
                self.interest.touch(identified.id)
        except InvalidIndex as e:
            raise ApplicationError(api.INVALID_INDEX, str(e)) from None
        except InvalidQuery as e:
            raise ApplicationError(api.INVALID_QUERY, str(e)) from None
        except (EngineUnavailable, EngineError) as e:
            raise ApplicationError(api.UNAVAILABLE, str(e)) from None
        return identified.id

    async def lookup(self, query_id: Any) -> dict[str, Any]:
        """WAMP ``estrom.lookup(id) -> {"index": ..., "query": ...}``."""
        if not isinstance(query_id, str):
            raise ApplicationError(api.UNKNOWN_SUBSCRIPTION, "a subscription ID is a string")
        try:
            found = await self.percolator.find(query_id)
        except (EngineUnavailable, EngineError) as e:
            raise ApplicationError(api.UNAVAILABLE, str(e)) from None
        if found is None:
            raise ApplicationError(api.UNKNOWN_SUBSCRIPTION, f"no query has the ID '{query_id}'")
        if self.interest is not None:
            self.interest.touch(query_id)
        return found

    async def ingest(self, index: str, documents: list[dict]) -> dict[str, int]:
        """Percolate and publish ``documents`` (with those of concurrent requests), then fire
        with their counts. Raises Overloaded, RouterUnavailable, EngineUnavailable or Rejected;
        then nothing can be taken as delivered and the sender should retry (but for Rejected)."""
        if self.session is None:
            raise RouterUnavailable("Beater is not connected to the router")
        return await self.pipeline.submit(index, documents)

    async def deliver(self, index: str, documents: list[dict]) -> dict[str, list[int]]:
        """Percolate one batch in one engine request; publish one event per matching query."""
        if self.one_by_one and len(documents) > 1:
            # The seed's design, kept for the benchmark: each document on its own.
            merged: dict[str, list[int]] = {}
            try:
                results = await gatherResults(
                    [Deferred.fromCoroutine(self.deliver(index, [document])) for document in documents],
                    consumeErrors=True,
                )
            except FirstError as e:
                e.subFailure.raiseException()
            for position, matches in enumerate(results):
                for query_id in matches:
                    merged.setdefault(query_id, []).append(position)
            return merged
        session = self.session
        if session is None:
            raise RouterUnavailable("Beater is not connected to the router")
        try:
            only = self.interest.active() if self.interest is not None else None
            matches = await self.percolator.percolate(index, documents, only)
        except EngineError as e:
            raise Rejected(e.reason) from e
        hits = [{"_index": index, "_id": uuid.uuid4().hex, "_source": doc} for doc in documents]
        options = PublishOptions(acknowledge=True)
        try:
            await gatherResults(
                [
                    session.publish(api.topic(query_id), *(hits[slot] for slot in slots), options=options)
                    for query_id, slots in matches.items()
                ],
                consumeErrors=True,
            )
        except Exception as e:
            # A FirstError wraps the first publication that failed (transport lost, refused).
            raise RouterUnavailable(f"publishing to the router failed: {e}") from e
        return matches
