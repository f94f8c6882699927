"""Which stored queries someone listens to, from the router's subscription meta-events.

Percolating only those makes the engine's work follow live demand, not the number of queries
ever registered; a query nobody listens to stays stored, so ``s=<ID>`` still reopens it.

A query counts as listened to from the moment it is registered or looked up (the subscription
follows the call), for ``grace`` seconds, and for as long as the router has a subscription to
its topic. A registration or lookup served by another Beater is recorded in the engine
(``estrom_seen``, see Percolator.percolate), so that a document sent to this Beater before the
subscription's meta-event arrives here is still percolated for it. A prefix or wildcard subscription that could match ``docs-for-*`` turns the filter
off. Meta events sent while Beater was away are lost, so every (re)join starts from the
router's list of subscriptions.

It also follows who subscribes to each query's topic, and which sessions are Tailors (role
``tailor``, from ``wamp.session.on_join``; the router sends a session's join before any of its
subscriptions), for beater.delivery to send Tailors a batch's hits on the feed: ``audience``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.protocol import ApplicationSession
from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, FirstError, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from estrom import api

log = Logger()

# How many ``wamp.subscription.get`` calls a (re)join has at the router at once, and how long
# each call to the router's meta API may take.
GETS_IN_FLIGHT = 16
META_CALL_SECONDS = 10.0
# A topic no query has (an ID is 16 hex digits): what matches it matches every docs-for-<ID>.
PROBE_TOPIC = api.TOPIC_PREFIX + "-"


class Interest:
    def __init__(self, grace: float = 60.0, clock: IReactorTime = default_reactor):
        self.grace = grace
        self._clock = clock
        self._topics: dict[int, str] = {}  # router subscription id -> query id, for docs-for-*
        self._subscription: dict[str, int] = {}  # and back
        self._subscribers: dict[int, set[int]] = {}  # subscription id -> session ids
        self._tailors: set[int] = set()  # the sessions of role "tailor"
        self._patterns: set[int] = set()  # prefix/wildcard subscriptions that may cover them
        self._recent: dict[str, float] = {}  # query id -> when it was registered or looked up
        # active()'s answer, asked for by every batch (with 10,000 queries listened to, making
        # it took 3.7 ms): made again when a topic comes or goes, a query is touched first, or
        # the first touch of those in it is older than ``grace``.
        self._active: list[str] | None = None
        self._active_until = 0.0

    def touch(self, query_id: str) -> None:
        """``query_id`` was just registered or looked up: a subscription is likely to follow."""
        if query_id not in self._recent:
            self._active = None
        self._recent[query_id] = self._clock.seconds()

    def active(self) -> list[str] | None:
        """The IDs of the queries to percolate (sorted; not to be changed), or None for all
        of them."""
        if self._patterns:
            return None
        now = self._clock.seconds()
        if self._active is not None and now <= self._active_until:
            return self._active
        for query_id, since in list(self._recent.items()):
            if now - since > self.grace:
                del self._recent[query_id]
        self._active = sorted(set(self._topics.values()) | set(self._recent))
        self._active_until = min(self._recent.values(), default=float("inf")) + self.grace
        return self._active

    def subscribed(self) -> set[str]:
        """The IDs of the queries whose topic has a subscriber now."""
        return set(self._topics.values())

    def audience(self, query_ids: list[str], recent: Collection[str] = ()) -> tuple[set[str], set[str]]:
        """Of ``query_ids``: those a Tailor is known to listen to (for the feed), and of those,
        the ones someone else may listen to as well: another subscriber, a pattern subscription,
        or a subscriber this Beater may not know of yet (the query was registered or looked up
        within ``grace`` seconds here, or ``recent``ly by any Beater: the percolation says)."""
        fed: set[str] = set()
        others: set[str] = set()
        if not self._tailors:
            return fed, others
        now = self._clock.seconds()
        for query_id in query_ids:
            subscription = self._subscription.get(query_id)
            subscribers = self._subscribers.get(subscription, ()) if subscription is not None else ()
            tailors = sum(1 for session_id in subscribers if session_id in self._tailors)
            if not tailors:
                continue
            fed.add(query_id)
            since = self._recent.get(query_id)
            if (
                tailors < len(subscribers)
                or self._patterns
                or query_id in recent
                or (since is not None and now - since <= self.grace)
            ):
                others.add(query_id)
        return fed, others

    async def follow(self, session: ApplicationSession) -> None:
        """Subscribe to the meta-events, then take in the subscriptions that exist already, with
        their subscribers, and the Tailors' sessions."""
        for handler, topic in (
            (self._created, "wamp.subscription.on_create"),
            (self._deleted, "wamp.subscription.on_delete"),
            (self._subscribed, "wamp.subscription.on_subscribe"),
            (self._unsubscribed, "wamp.subscription.on_unsubscribe"),
            (self._joined, "wamp.session.on_join"),
            (self._left, "wamp.session.on_leave"),
        ):
            await self._asked(session.subscribe(handler, topic))
        self._topics.clear()
        self._subscription.clear()
        self._subscribers.clear()
        self._patterns.clear()
        self._active = None
        self._tailors = set(await self._asked(session.call("wamp.session.list", [api.TAILOR_ROLE])) or ())
        listed = await self._asked(session.call("wamp.subscription.list"))
        known = {subscription_id for ids in listed.values() for subscription_id in ids}
        # crossbar's list leaves wildcard subscriptions out (a FIXME in its router/service.py);
        # its match of a topic no query has finds every one that receives any docs-for-<ID>.
        known.update(await self._asked(session.call("wamp.subscription.match", PROBE_TOPIC)) or ())
        gets = DeferredSemaphore(GETS_IN_FLIGHT)
        try:
            found = await DeferredList(
                [gets.run(self._get, session, subscription_id) for subscription_id in sorted(known)],
                fireOnOneErrback=True,
                consumeErrors=True,
            )
        except FirstError as e:
            e.subFailure.raiseException()  # the join fails with what failed
        for _, got in found:
            if got is not None:
                details, subscribers = got
                self._created(None, details)
                # With those that subscribed while this was asked (their meta-events came first).
                if details["id"] in self._topics:
                    self._subscribers.setdefault(details["id"], set()).update(subscribers)
        log.info(
            "Beater: {topics} topics have subscribers, {tailors} Tailors are joined{patterns}",
            topics=len(self._topics),
            tailors=len(self._tailors),
            patterns=" (and a pattern subscription: all queries are percolated)" if self._patterns else "",
        )

    def _asked(self, answer: Awaitable[Any]) -> Deferred[Any]:
        """``answer`` (of a call to the router's meta API), or TimeoutError after
        META_CALL_SECONDS: the join fails and is made again (estrom.wamp.whole_join)."""
        return ensureDeferred(answer).addTimeout(META_CALL_SECONDS, self._clock)

    async def _get(self, session: ApplicationSession, subscription_id: int) -> tuple[dict, list[int]] | None:
        """A subscription's details and, for a query's topic, its subscribers; None if it is gone
        since it was listed."""
        try:
            details = await self._asked(session.call("wamp.subscription.get", subscription_id))
            if details.get("match", "exact") != "exact" or not details.get("uri", "").startswith(
                api.TOPIC_PREFIX
            ):
                return details, []
            call = session.call("wamp.subscription.list_subscribers", subscription_id)
            return details, await self._asked(call) or []
        except ApplicationError as e:
            if e.error == "wamp.error.no_such_subscription":
                return None
            raise

    def _created(self, session_id: int | None, details: dict) -> None:
        uri, match = details.get("uri", ""), details.get("match", "exact")
        if match == "exact" and uri.startswith(api.TOPIC_PREFIX):
            query_id = uri[len(api.TOPIC_PREFIX) :]
            self._topics[details["id"]] = query_id
            self._active = None
            self._subscription[query_id] = details["id"]
            self._subscribers.setdefault(details["id"], set())
        elif match != "exact" and _may_cover_topics(uri, match):
            self._patterns.add(details["id"])

    def _deleted(self, session_id: int, subscription_id: int) -> None:
        query_id = self._topics.pop(subscription_id, None)
        if query_id is not None:
            self._active = None
            if self._subscription.get(query_id) == subscription_id:
                del self._subscription[query_id]
        self._subscribers.pop(subscription_id, None)
        self._patterns.discard(subscription_id)

    def _subscribed(self, session_id: int, subscription_id: int) -> None:
        subscribers = self._subscribers.get(subscription_id)
        if subscribers is not None:  # a query's topic (its on_create came first)
            subscribers.add(session_id)

    def _unsubscribed(self, session_id: int, subscription_id: int) -> None:
        self._subscribers.get(subscription_id, set()).discard(session_id)

    def _joined(self, details: dict) -> None:
        if details.get("authrole") == api.TAILOR_ROLE:
            self._tailors.add(details["session"])

    def _left(self, session_id: int, *more: Any) -> None:
        self._tailors.discard(session_id)


def _may_cover_topics(uri: str, match: str) -> bool:
    """Whether a prefix or wildcard subscription could receive some ``docs-for-<ID>`` topic."""
    if match == "prefix":
        return api.TOPIC_PREFIX.startswith(uri) or uri.startswith(api.TOPIC_PREFIX)
    # Wildcard: a topic "docs-for-<ID>" is one component, which an empty component matches.
    components = uri.split(".")
    return len(components) == 1 and (components[0] == "" or components[0].startswith(api.TOPIC_PREFIX))
