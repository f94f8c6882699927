"""Only queries someone listens to are percolated (the router's subscription meta-events)."""

from __future__ import annotations

import pytest_twisted
from autobahn.wamp.types import SubscribeOptions

from estrom import api
from estrom.clients import HttpStream, eventually, post, wamp_session


@pytest_twisted.ensureDeferred
async def test_percolation_follows_live_subscriptions(stack, index):
    client = await wamp_session(stack.router_url)
    listened = await client.call(api.REGISTER, index, "service:api")
    ignored = await client.call(api.REGISTER, index, "level:error")
    received = []
    subscription = await client.subscribe(lambda *hits: received.extend(hits), api.topic(listened))
    # A Beater that starts now learns of the subscription from the router's list, and forgets
    # registrations after 0.2 s unless someone subscribed (the record of a registration in the
    # engine is in whole seconds: up to a second more).
    beater = stack.start_beater(
        "beater-interest", port=stack.ports.beater + 5, ESTROM_ACTIVE_GRACE_SECONDS="0.2"
    )
    url = f"{beater}/api/v0.1/docs/{index}"
    document = {"service": "api", "level": "error"}  # both queries match it
    try:

        async def only_the_subscribed():
            status, answer = await post(url, document)
            assert status == 200
            return answer["published"] == 1

        await eventually(only_the_subscribed, what="the query without a subscriber to be left out")
        await eventually(lambda: received, what="the subscriber's hit")

        await subscription.unsubscribe()

        async def nobody_listens():
            return (await post(url, document))[1]["published"] == 0

        await eventually(nobody_listens, what="Beater to see the unsubscription")

        # An inactive query still opens by its ID, and is percolated again from then on.
        stream = await HttpStream.open(stack.tailor_url, s=ignored)
        await stream.wait_for_head()
        await eventually(lambda: _published_one(url, document), what="the reopened query to be percolated")
        assert (await stream.wait_for_hits(1))[0]["_source"] == document
        stream.close()

        # A prefix subscription could receive any topic: then every query is percolated. (Only
        # a trusted principal may make one: anonymous clients subscribe to exact topics.)
        watcher = await wamp_session(
            stack.router_url, {"ticket": {"authid": "watcher", "ticket": stack.watcher}}
        )
        everything = await watcher.subscribe(
            lambda *hits: None, api.TOPIC_PREFIX, SubscribeOptions(match="prefix")
        )

        async def all_percolated():
            return (await post(url, document))[1]["published"] == 2

        await eventually(all_percolated, what="the prefix subscription to switch the filter off")
        await everything.unsubscribe()
        watcher.leave()
    finally:
        client.leave()
        stack.stop("beater-interest")


async def _published_one(url, document) -> bool:
    return (await post(url, document))[1]["published"] >= 1
