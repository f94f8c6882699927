"""Interest's bookkeeping with time advanced by hand: which queries are percolated, and when."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from beater.interest import GETS_IN_FLIGHT, META_CALL_SECONDS, Interest
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


class _SlowRouter(_Router):
    """A router whose ``wamp.subscription.get`` answers only when told to."""

    def __init__(self, subscriptions: dict[int, dict]):
        super().__init__(subscriptions)
        self.asked: list[tuple[int, Deferred]] = []

    def call(self, procedure, *args):
        if procedure != "wamp.subscription.get":
            return super().call(procedure, *args)
        self.asked.append((args[0], Deferred()))
        return self.asked[-1][1]


def test_subscription_details_are_asked_side_by_side_at_most_16_at_once():
    clock = Clock()
    router = _SlowRouter({n: {"id": n, "uri": api.topic(f"{n:016x}"), "match": "exact"} for n in range(40)})
    interest = Interest(clock=clock)
    done = Deferred.fromCoroutine(interest.follow(router))
    assert len(router.asked) == GETS_IN_FLIGHT  # not one after another, and not 40 at once
    while not done.called:
        waiting = [asked for asked in router.asked if not asked[1].called]
        assert 0 < len(waiting) <= GETS_IN_FLIGHT
        subscription_id, answer = waiting[0]
        answer.callback(router.subscriptions[subscription_id])
    assert len(interest.subscribed()) == 40


def test_a_router_that_does_not_answer_a_meta_call_fails_the_join_after_its_deadline():
    clock = Clock()
    router = _SlowRouter({1: {"id": 1, "uri": api.topic("a" * 16), "match": "exact"}})
    done = Deferred.fromCoroutine(Interest(clock=clock).follow(router))
    failures: list = []
    done.addErrback(failures.append)
    clock.advance(META_CALL_SECONDS - 0.1)
    assert not done.called
    clock.advance(0.1)
    assert failures and failures[0].check(defer.TimeoutError)  # whole_join leaves and joins again
