"""What an anonymous WAMP client may do on the router, and which web pages may connect to it.

An anonymous client (role ``client``) may call ``estrom.register`` and ``estrom.lookup`` and
subscribe, with match ``exact``, to one ``docs-for-<16 hex digits>`` topic: nothing that would
let it receive other queries' hits (router/authorizer.py decides), over WebSocket and over
RawSocket alike (port 8080 speaks both). A WebSocket handshake from a page of another origin is
refused (the transport's ``allowed_origins``); a page cannot speak RawSocket at all.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from dev.stack import ROOT
from estrom import api
from estrom.clients import eventually, post, wamp_attempt, wamp_session
from estrom.wamp import FEED_ENCODING, FeedCodec

# The router, the page and the command do not depend on the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)

NOT_AUTHORIZED = "wamp.error.not_authorized"
SOME_ID = "0123456789abcdef"


@pytest_twisted.async_yield_fixture(params=["websocket", "rawsocket"])
async def session(stack, request):
    """An anonymous session, over each of the router's transports: they admit the same."""
    session = await wamp_session(
        stack.router_url if request.param == "websocket" else stack.router_rawsocket_url
    )
    yield session
    session.leave()


async def refused(request) -> str:
    """The error URI ``request`` (a call or subscribe Deferred) fails with."""
    with pytest.raises(ApplicationError) as raised:
        await request
    return raised.value.error


def ignore(*hits) -> None:
    pass


# --- subscriptions ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_exact_subscription_to_a_registered_query_receives_its_hits(stack, session, index):
    sid = await session.call(api.REGISTER, index, "level:error")
    implicit, explicit = [], []
    await session.subscribe(lambda *hits: implicit.extend(hits), api.topic(sid))
    await session.subscribe(
        lambda *hits: explicit.extend(hits), api.topic(sid), options=SubscribeOptions(match="exact")
    )

    status, _ = await post(
        f"{stack.beater_url}/api/v0.1/docs/{index}", [{"level": "error"}, {"level": "info"}]
    )
    assert status == 200
    await eventually(lambda: implicit and explicit, what="the hit on both subscriptions")
    assert [hit["_source"] for hit in implicit] == [{"level": "error"}]
    assert explicit == implicit


@pytest_twisted.ensureDeferred
async def test_prefix_subscription_to_every_querys_topic_is_refused(session):
    prefix = SubscribeOptions(match="prefix")
    assert await refused(session.subscribe(ignore, api.TOPIC_PREFIX, options=prefix)) == NOT_AUTHORIZED
    assert await refused(session.subscribe(ignore, "docs", options=prefix)) == NOT_AUTHORIZED


@pytest_twisted.ensureDeferred
async def test_prefix_subscription_is_refused_on_a_topic_that_may_be_subscribed_exactly(session, index):
    # An exact subscription is allowed first: its decision must not be reused for the prefix one.
    sid = await session.call(api.REGISTER, index, "level:error")
    await session.subscribe(ignore, api.topic(sid))
    error = await refused(session.subscribe(ignore, api.topic(sid), options=SubscribeOptions(match="prefix")))
    assert error == NOT_AUTHORIZED


@pytest.mark.parametrize(
    "topic",
    [
        "",  # one empty component: matches every topic without a dot, docs-for-<ID> among them
        "docs-for-.",
        api.topic(SOME_ID),
    ],
)
@pytest_twisted.ensureDeferred
async def test_wildcard_subscription_is_refused(session, topic):
    error = await refused(session.subscribe(ignore, topic, options=SubscribeOptions(match="wildcard")))
    assert error == NOT_AUTHORIZED


@pytest.mark.parametrize(
    "topic",
    [
        "docs-for-0123456789ABCDEF",
        "docs-for-0123456789abcde",
        "docs-for-0123456789abcdef0",
        "docs-for-anything",
        api.FEED,  # every hit a Tailor follows: Tailors only
        "estrom.register",
        "wamp.session.on_join",
        "wamp.subscription.on_create",
        "wamp.registration.on_register",
    ],
)
@pytest_twisted.ensureDeferred
async def test_subscription_to_anything_but_a_query_topic_is_refused(session, topic):
    assert await refused(session.subscribe(ignore, topic)) == NOT_AUTHORIZED


# --- Tailors: the feed ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_only_a_tailor_admitted_by_its_secret_may_subscribe_to_the_feed(stack, index):
    tailor = await wamp_session(
        stack.router_rawsocket_url, {"ticket": {"authid": "tailor", "ticket": stack.tailor_secret}}
    )
    # Another trusted role (the tests' watcher may subscribe to every topic by prefix) may not.
    watcher = await wamp_session(stack.router_url, {"ticket": {"authid": "watcher", "ticket": stack.watcher}})
    try:
        await tailor.subscribe(ignore, api.FEED)
        sid = await tailor.call(api.REGISTER, index, "level:error")
        await tailor.subscribe(ignore, api.topic(sid))
        for options in (SubscribeOptions(match="prefix"), SubscribeOptions(match="wildcard")):
            assert await refused(tailor.subscribe(ignore, "estrom.", options=options)) == NOT_AUTHORIZED
            assert (
                await refused(tailor.subscribe(ignore, api.TOPIC_PREFIX, options=options)) == NOT_AUTHORIZED
            )
        publish = tailor.publish(api.FEED, {"forged": True}, options=PublishOptions(acknowledge=True))
        assert await refused(publish) == NOT_AUTHORIZED
        assert await refused(tailor.call("wamp.session.list")) == NOT_AUTHORIZED
        assert await refused(watcher.subscribe(ignore, api.FEED)) == NOT_AUTHORIZED
    finally:
        tailor.leave()
        watcher.leave()
    wrong = {"ticket": {"authid": "tailor", "ticket": stack.tailor_secret + "x"}}
    assert await wamp_attempt(stack.router_url, wrong) == (api.NOT_AUTHENTICATED, "the ticket is not valid")


@pytest_twisted.ensureDeferred
async def test_the_feed_crosses_the_router_as_an_opaque_payload(stack, index):
    """Beater publishes the feed's events as one CBOR payload (estrom.wamp.FeedCodec), which the
    router hands on without decoding: a Tailor decodes it, hits and matches as Beater sent them."""
    seen: list[str] = []

    class Recording(FeedCodec):
        def decode(self, is_originating, uri, encoded_payload):
            seen.append(encoded_payload.enc_algo)
            return super().decode(is_originating, uri, encoded_payload)

    tailor = await wamp_session(
        stack.router_url, {"ticket": {"authid": "tailor", "ticket": stack.tailor_secret}}
    )
    try:
        tailor.set_payload_codec(Recording())
        fed: Deferred = Deferred()
        await tailor.subscribe(lambda *hits, **more: fed.called or fed.callback((hits, more)), api.FEED)
        sid = await tailor.call(api.REGISTER, index, "level:error")
        await tailor.subscribe(ignore, api.topic(sid))

        async def sent() -> bool:  # until Beater has heard of the subscription: the feed is for it
            status, _ = await post(f"{stack.beater_url}/api/v0.1/docs/{index}", {"level": "error"})
            assert status == 200
            return fed.called

        await eventually(sent, what="a feed event")
        hits, more = await fed
        assert [hit["_source"] for hit in hits] == [{"level": "error"}]
        assert more == {api.MATCHES: {sid: [0]}}
        assert seen and set(seen) == {FEED_ENCODING}
    finally:
        tailor.leave()


# --- calls --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "procedure",
    [
        "wamp.session.list",
        "wamp.session.count",
        "wamp.session.get",
        "wamp.subscription.list",
        "wamp.subscription.lookup",
        "wamp.subscription.list_subscribers",
        "wamp.registration.list",
    ],
)
@pytest_twisted.ensureDeferred
async def test_the_meta_api_is_refused(session, procedure):
    assert await refused(session.call(procedure)) == NOT_AUTHORIZED


@pytest_twisted.ensureDeferred
async def test_the_authorizer_cannot_be_called_or_taken_over(session):
    config = json.loads((ROOT / "router" / ".crossbar" / "config.json").read_text())
    (client,) = [
        role
        for worker in config["workers"]
        for realm in worker.get("realms", [])
        for role in realm["roles"]
        if role["name"] == "client"
    ]
    authorizer = client.get("authorizer")
    assert isinstance(authorizer, str), "the client role has no dynamic authorizer"

    asked = ({"authrole": "client"}, api.TOPIC_PREFIX, "subscribe", {"match": "prefix"})
    assert await refused(session.call(authorizer, *asked)) == NOT_AUTHORIZED
    # Taken already (crossbar says so before it checks permissions), and not ours to take.
    error = await refused(session.register(lambda *args: True, authorizer))
    assert error in {NOT_AUTHORIZED, "wamp.error.procedure_already_exists"}
    error = await refused(
        session.subscribe(ignore, api.TOPIC_PREFIX, options=SubscribeOptions(match="prefix"))
    )
    assert error == NOT_AUTHORIZED


# --- origins ------------------------------------------------------------------------------------------


class _Handshake(Protocol):
    """Sends one WebSocket opening handshake; ``status`` fires with the answer's status code."""

    def __init__(self, request: bytes):
        self.request = request
        self.received = b""
        self.status: Deferred[int] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"\r\n\r\n" in self.received:
            self._done()
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self._done()

    def _done(self) -> None:
        if not self.status.called:
            status_line = self.received.split(b"\r\n", 1)[0]
            self.status.callback(int(status_line.split()[1]) if status_line else 0)


async def handshake(port: int, origin: str | None) -> int:
    """The status of a WAMP-over-WebSocket opening handshake to the router, as a browser on a
    page of ``origin`` sends it (``None``: as non-browser clients, without an Origin header)."""
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: wamp.2.json",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    protocol = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), _Handshake(request))
    return await protocol.status


@pytest_twisted.ensureDeferred
async def test_the_routers_own_page_and_clients_without_an_origin_may_connect(stack):
    port = stack.ports.router
    assert await handshake(port, f"http://127.0.0.1:{port}") == 101
    assert await handshake(port, f"http://localhost:{port}") == 101
    assert await handshake(port, None) == 101  # autobahn-python, Node.js: no Origin header


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",  # sandboxed iframes, file: and data: pages
        "http://127.0.0.1:1",
        "https://127.0.0.1:{port}",
        "http://127.0.0.1.evil.example:{port}",
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_page_of_another_origin_may_not_connect(stack, origin):
    port = stack.ports.router
    assert await handshake(port, origin.format(port=port)) == 400
