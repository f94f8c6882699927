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

    def __init__(
        self,
        subscriptions: dict[int, dict],
        subscribers: dict[int, list[int]] | None = None,
        tailors: list[int] | None = None,
    ):
        self.subscriptions = subscriptions
        self.subscribers = subscribers or {}
        self.tailors = tailors or []
        self.handlers: dict[str, object] = {}

    def subscribe(self, handler, topic):
        self.handlers[topic] = handler
        return succeed(None)

    def call(self, procedure, *args):
        if procedure == "wamp.subscription.list":
            return succeed({"exact": list(self.subscriptions), "prefix": [], "wildcard": []})
        if procedure == "wamp.session.list":
            assert args == ([api.TAILOR_ROLE],)
            return succeed(self.tailors)
        if procedure == "wamp.subscription.list_subscribers":
            return succeed(self.subscribers.get(args[0], []))
        return succeed(self.subscriptions.get(args[0]))

    def joined(self, session_id: int, role: str) -> None:
        self.handlers["wamp.session.on_join"]({"session": session_id, "authrole": role, "authid": "x"})

    def left(self, session_id: int) -> None:
        self.handlers["wamp.session.on_leave"](session_id, "x", "tailor")

    def subscribed(self, session_id: int, subscription_id: int) -> None:
        self.handlers["wamp.subscription.on_subscribe"](session_id, subscription_id)

    def unsubscribed(self, session_id: int, subscription_id: int) -> None:
        self.handlers["wamp.subscription.on_unsubscribe"](session_id, subscription_id)

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


def test_the_answer_follows_touches_and_topics_and_is_not_made_again_for_every_batch():
    clock = Clock()
    interest = Interest(grace=60, clock=clock)
    interest.touch("a" * 16)
    first = interest.active()
    assert interest.active() is first  # nothing changed: the same list
    clock.advance(50)
    interest.touch("a" * 16)  # again: counts from now
    interest.touch("b" * 16)
    assert interest.active() == ["a" * 16, "b" * 16]
    clock.advance(20)  # past the first touch's window, within the second's
    assert interest.active() == ["a" * 16, "b" * 16]
    clock.advance(41)
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

    def __init__(self, subscriptions: dict[int, dict], *more, **named):
        super().__init__(subscriptions, *more, **named)
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


A, B, C = "a" * 16, "b" * 16, "c" * 16


def _topics(*query_ids: str) -> dict[int, dict]:
    return {
        n: {"id": n, "uri": api.topic(query_id), "match": "exact"} for n, query_id in enumerate(query_ids, 1)
    }


def test_the_feed_takes_the_queries_a_tailor_listens_to_known_from_the_routers_lists_at_join():
    # Session 100 is a Tailor, 200 a browser: A is the Tailor's alone, B both's, C the browser's.
    router = _Router(_topics(A, B, C), {1: [100], 2: [100, 200], 3: [200]}, tailors=[100])
    interest = Interest(grace=60, clock=Clock())
    follow(interest, router)
    fed, others = interest.audience([A, B, C])
    assert fed == {A, B}  # C goes to its topic only, as before
    assert others == {B}  # B's browser still needs B's own event; A has no one else


def test_subscriptions_and_tailors_are_followed_by_their_meta_events():
    clock = Clock()
    router = _Router({})
    interest = Interest(grace=60, clock=clock)
    follow(interest, router)
    router.joined(7, api.TAILOR_ROLE)
    router.joined(8, "client")
    router.created(1, api.topic(A))
    router.subscribed(7, 1)
    assert interest.audience([A]) == ({A}, set())
    router.subscribed(8, 1)
    assert interest.audience([A]) == ({A}, {A})
    router.unsubscribed(8, 1)
    assert interest.audience([A]) == ({A}, set())
    router.left(7)  # a Tailor that is gone gets nothing on the feed: its topic's events go to all
    assert interest.audience([A]) == (set(), set())


def test_a_query_someone_may_be_about_to_subscribe_to_keeps_its_own_event():
    clock = Clock()
    router = _Router(_topics(A, B), {1: [100], 2: [100]}, tailors=[100])
    interest = Interest(grace=60, clock=clock)
    follow(interest, router)
    interest.touch(A)  # registered or looked up here: its subscriber may not be known yet
    assert interest.audience([A, B]) == ({A, B}, {A})
    assert interest.audience([A, B], recent={B}) == ({A, B}, {A, B})  # by another Beater
    clock.advance(61)
    assert interest.audience([A, B]) == ({A, B}, set())
    router.created(9, "docs-", "prefix")  # a pattern subscriber may receive any topic
    assert interest.audience([A, B]) == ({A, B}, {A, B})


def test_a_query_whose_subscribers_are_not_known_is_never_on_the_feed():
    router = _Router(_topics(A), {1: [200]}, tailors=[100])
    interest = Interest(clock=Clock())
    follow(interest, router)
    # B has no subscription Beater knows of (percolated because another Beater registered it):
    # its own event reaches everyone, Tailors too.
    assert interest.audience([A, B]) == (set(), set())


def test_a_subscription_made_while_the_join_asks_is_kept():
    router = _SlowRouter(_topics(A), {1: [100]}, tailors=[100])
    interest = Interest(clock=Clock())
    done = Deferred.fromCoroutine(interest.follow(router))
    router.created(1, api.topic(A))
    router.joined(300, api.TAILOR_ROLE)  # another Tailor, after the Tailors were listed
    router.subscribed(300, 1)
    ((subscription_id, answer),) = router.asked
    answer.callback(router.subscriptions[subscription_id])
    assert done.called
    assert interest.audience([A]) == ({A}, set())
    router.unsubscribed(100, 1)
    assert interest.audience([A]) == ({A}, set())  # session 300 still listens
