"""Interest's bookkeeping with time advanced by hand: which queries are percolated, and when."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from beater.interest import Interest
from estrom import api


class _Router:
    """A session that answers the router's subscription meta API from a table, and keeps the
    meta-event handlers Interest subscribes so that a test can fire them."""

    def __init__(self, subscriptions: dict[int, dict]):
        self.subscriptions = subscriptions
        self.handlers: dict[str, object] = {}

    def subscribe(self, handler, topic):
        self.handlers[topic] = handler
        return succeed(None)

    def call(self, procedure, *args):
        if procedure == "wamp.subscription.list":
            return succeed({"exact": list(self.subscriptions), "prefix": [], "wildcard": []})
        return succeed(self.subscriptions.get(args[0]))

    def created(self, subscription_id: int, uri: str, match: str = "exact") -> None:
        self.handlers["wamp.subscription.on_create"](1, {"id": subscription_id, "uri": uri, "match": match})

    def deleted(self, subscription_id: int) -> None:
        self.handlers["wamp.subscription.on_delete"](1, subscription_id)


def follow(interest: Interest, router: _Router) -> None:
    done = Deferred.fromCoroutine(interest.follow(router))
    assert done.called  # every answer of the double is there at once


def test_a_registered_query_is_percolated_for_the_grace_seconds_then_not():
    clock = Clock()
    interest = Interest(grace=60, clock=clock)
    interest.touch("a" * 16)
    clock.advance(59)
    assert interest.active() == ["a" * 16]
    clock.advance(2)
    assert interest.active() == []


def test_a_subscribed_query_is_percolated_until_its_subscription_ends():
    clock = Clock()
    interest = Interest(grace=1, clock=clock)
    router = _Router({7: {"id": 7, "uri": api.topic("b" * 16), "match": "exact"}})
    follow(interest, router)
    clock.advance(3600)
    assert interest.active() == ["b" * 16]
    router.created(8, api.topic("c" * 16))
    assert interest.active() == ["b" * 16, "c" * 16]
    router.deleted(7)
    assert interest.active() == ["c" * 16]
    assert interest.subscribed() == {"c" * 16}


def test_a_pattern_subscription_that_may_cover_topics_percolates_every_query():
    interest = Interest(clock=Clock())
    router = _Router({})
    follow(interest, router)
    router.created(9, "com.example.", "prefix")  # cannot receive docs-for-<ID>
    assert interest.active() == []
    router.created(10, "docs-", "prefix")
    assert interest.active() is None
    router.deleted(10)
    router.created(11, "", "wildcard")  # one empty component: every one-component topic
    assert interest.active() is None


def test_a_rejoin_forgets_subscriptions_the_router_no_longer_has():
    interest = Interest(clock=Clock())
    follow(interest, _Router({1: {"id": 1, "uri": api.topic("d" * 16), "match": "exact"}}))
    assert interest.subscribed() == {"d" * 16}
    follow(interest, _Router({}))
    assert interest.subscribed() == set()
