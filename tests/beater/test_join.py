"""Beater joins the router whole, or leaves and joins again: never half-joined (answering
``estrom.register`` while every document gets 503), and what it learns of existing subscribers on
a (re)join is complete."""

from __future__ import annotations

import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions, SubscribeOptions

from beater.interest import Interest
from estrom import api
from estrom.clients import eventually, post, scrape, wamp_session


def _beater_ticket(stack) -> dict:
    return {"ticket": {"authid": "beater", "ticket": stack.secret}}


async def _refusal(call) -> str:
    try:
        await call
    except ApplicationError as e:
        return e.error
    raise AssertionError("the call was answered")


@pytest_twisted.ensureDeferred
async def test_a_join_that_fails_at_a_step_leaves_and_joins_again(stack, index):
    # A session of Beater's role holds estrom.backlog with another invocation policy: a Beater
    # that joins now registers estrom.register and estrom.lookup, then fails on estrom.backlog.
    stack.stop("beater")
    blocker = await wamp_session(stack.router_url, _beater_ticket(stack))
    client = await wamp_session(stack.router_url)
    try:
        await blocker.register(lambda *args: None, api.BACKLOG, options=RegisterOptions(invoke="single"))
        url = stack.start_beater(joined=False)

        async def failed_joins() -> float:
            metrics = await scrape(url)
            return metrics.get(("estrom_failures_total", (("what", "join"),)), 0)

        await eventually(failed_joins, what="a failed join counted")
        # Not half-joined: its procedures went with the session it left (they would answer while
        # every document got 503).
        assert await _refusal(client.call(api.REGISTER, index, "*")) == "wamp.error.no_such_procedure"
        assert (await post(f"{url}/api/v0.1/docs/{index}", {"a": 1}))[0] == 503

        blocker.leave()  # what made it fail is gone: the next join is whole

        async def taken() -> bool:
            return (await post(f"{url}/api/v0.1/docs/{index}", {"a": 1}))[0] == 200

        await eventually(taken, what="Beater to join again and take documents")
        assert isinstance(await client.call(api.REGISTER, index, "a:1"), str)
    finally:
        client.leave()
        if blocker.is_attached():
            await blocker.leave()
        stack.stop("beater")
        stack.start_beater()


class _Vanishing:
    """A Beater's session (real, at the real router) through which a subscription is deleted
    after the router listed it and before it is asked for: the race of a subscriber that leaves
    while a Beater (re)joins."""

    def __init__(self, session, subscription):
        self.session, self.subscription = session, subscription

    def subscribe(self, *args, **kwargs):
        return self.session.subscribe(*args, **kwargs)

    async def call(self, procedure, *args):
        answer = await self.session.call(procedure, *args)
        if procedure == "wamp.subscription.list" and self.subscription.active:
            await self.subscription.unsubscribe()
        return answer


@pytest_twisted.ensureDeferred
async def test_a_subscription_gone_between_list_and_get_is_skipped(stack, index):
    client = await wamp_session(stack.router_url)
    beater = await wamp_session(stack.router_url, _beater_ticket(stack))
    try:
        kept = await client.call(api.REGISTER, index, "kept:1")
        gone = await client.call(api.REGISTER, index, "gone:1")
        await client.subscribe(lambda *hits: None, api.topic(kept))
        leaving = await client.subscribe(lambda *hits: None, api.topic(gone))
        interest = Interest(grace=0)
        await interest.follow(_Vanishing(beater, leaving))
        # crossbar answers wamp.error.no_such_subscription for the one that went: skipped, and
        # the others are known.
        assert kept in interest.subscribed()
        assert gone not in interest.subscribed()
    finally:
        client.leave()
        beater.leave()


@pytest_twisted.ensureDeferred
async def test_a_joining_beater_learns_of_prefix_and_wildcard_subscribers(stack, index):
    client = await wamp_session(stack.router_url)
    watcher = await wamp_session(stack.router_url, {"ticket": {"authid": "watcher", "ticket": stack.watcher}})
    url = None
    try:
        listened = await client.call(api.REGISTER, index, "service:api")
        await client.call(api.REGISTER, index, "level:error")  # nobody subscribes to it
        await client.subscribe(lambda *hits: None, api.topic(listened))
        document = {"service": "api", "level": "error"}  # both queries match it

        async def only_the_subscribed() -> bool:
            return (await post(f"{url}/api/v0.1/docs/{index}", document))[1]["published"] == 1

        def start() -> str:
            return stack.start_beater(
                "beater-join", port=stack.ports.beater + 6, ESTROM_ACTIVE_GRACE_SECONDS="0.2"
            )

        url = start()
        await eventually(only_the_subscribed, what="the registration without a subscriber to be left out")
        stack.stop("beater-join")
        for uri, match in (("", "wildcard"), (api.TOPIC_PREFIX, "prefix")):
            # Subscribed before this Beater joins: it learns of it from the router's meta API
            # (crossbar's wamp.subscription.list leaves wildcard subscriptions out), and
            # percolates every query for it.
            pattern = await watcher.subscribe(lambda *hits: None, uri, SubscribeOptions(match=match))
            url = start()
            status, answer = await post(f"{url}/api/v0.1/docs/{index}", document)
            assert (status, answer["published"]) == (200, 2), match
            await pattern.unsubscribe()
            await eventually(only_the_subscribed, what=f"the {match} subscription to end")
            stack.stop("beater-join")
    finally:
        client.leave()
        watcher.leave()
        stack.stop("beater-join")
