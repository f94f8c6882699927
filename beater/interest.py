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
"""

from __future__ import annotations

from autobahn.wamp.protocol import ApplicationSession
from twisted.internet import reactor as default_reactor
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from estrom import api

log = Logger()


class Interest:
    def __init__(self, grace: float = 60.0, clock: IReactorTime = default_reactor):
        self.grace = grace
        self._clock = clock
        self._topics: dict[int, str] = {}  # router subscription id -> query id, for docs-for-*
        self._patterns: set[int] = set()  # prefix/wildcard subscriptions that may cover them
        self._recent: dict[str, float] = {}  # query id -> when it was registered or looked up

    def touch(self, query_id: str) -> None:
        """``query_id`` was just registered or looked up: a subscription is likely to follow."""
        self._recent[query_id] = self._clock.seconds()

    def active(self) -> list[str] | None:
        """The IDs of the queries to percolate, or None for all of them."""
        if self._patterns:
            return None
        now = self._clock.seconds()
        for query_id, since in list(self._recent.items()):
            if now - since > self.grace:
                del self._recent[query_id]
        return sorted(set(self._topics.values()) | set(self._recent))

    def subscribed(self) -> set[str]:
        """The IDs of the queries whose topic has a subscriber now."""
        return set(self._topics.values())

    async def follow(self, session: ApplicationSession) -> None:
        """Subscribe to the meta-events, then take in the subscriptions that exist already."""
        await session.subscribe(self._created, "wamp.subscription.on_create")
        await session.subscribe(self._deleted, "wamp.subscription.on_delete")
        self._topics.clear()
        self._patterns.clear()
        listed = await session.call("wamp.subscription.list")
        for ids in listed.values():
            for subscription_id in ids:
                details = await session.call("wamp.subscription.get", subscription_id)
                if details is not None:
                    self._created(None, details)
        log.info(
            "Beater: {topics} topics have subscribers{patterns}",
            topics=len(self._topics),
            patterns=" (and a pattern subscription: all queries are percolated)" if self._patterns else "",
        )

    def _created(self, session_id: int | None, details: dict) -> None:
        uri, match = details.get("uri", ""), details.get("match", "exact")
        if match == "exact" and uri.startswith(api.TOPIC_PREFIX):
            self._topics[details["id"]] = uri[len(api.TOPIC_PREFIX) :]
        elif match != "exact" and _may_cover_topics(uri, match):
            self._patterns.add(details["id"])

    def _deleted(self, session_id: int, subscription_id: int) -> None:
        self._topics.pop(subscription_id, None)
        self._patterns.discard(subscription_id)


def _may_cover_topics(uri: str, match: str) -> bool:
    """Whether a prefix or wildcard subscription could receive some ``docs-for-<ID>`` topic."""
    if match == "prefix":
        return api.TOPIC_PREFIX.startswith(uri) or uri.startswith(api.TOPIC_PREFIX)
    # Wildcard: a topic "docs-for-<ID>" is one component, which an empty component matches.
    components = uri.split(".")
    return len(components) == 1 and (components[0] == "" or components[0].startswith(api.TOPIC_PREFIX))
