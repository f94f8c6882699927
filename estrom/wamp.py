"""How the services connect to the router: one place for transports, retry and logging."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import cbor2
from autobahn.twisted.component import Component
from autobahn.twisted.wamp import Session
from autobahn.wamp import protocol, serializer
from autobahn.wamp.interfaces import IPayloadCodec
from autobahn.wamp.protocol import ApplicationSession
from autobahn.wamp.types import CloseDetails, EncodedPayload, SessionDetails
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from estrom import api

# The deepest a WAMP message can be when the router relays it: the router decodes msgpack up to
# 1,024 levels (msgpack's own limit), JSON to about 480 (its recursion limit, which
# router/authorizer.py puts back to Python's default) and CBOR to 400, and encodes it again, as
# deep, for us. cbor2 refuses more than 400 levels by default, and a message autobahn cannot
# decode drops the whole connection: one anonymous call nested 401 levels deep would disconnect
# Beater, and every sender would get 503 until it reconnected.
MAX_MESSAGE_DEPTH = 2048


class _CBORObjectSerializer(serializer.CBORObjectSerializer):
    def unserialize(self, payload: bytes) -> list:
        return [cbor2.loads(payload, max_depth=MAX_MESSAGE_DEPTH)]


class _CBORSerializer(serializer.CBORSerializer):
    def __init__(self, batched: bool = False):
        if batched:  # never negotiated: WebSocket carries one message per frame
            raise ValueError("batched CBOR is not supported")
        serializer.Serializer.__init__(self, _CBORObjectSerializer())


# Transports name their serializers; autobahn makes them from this registry.
serializer.SERID_TO_SER[_CBORSerializer.SERIALIZER_ID] = _CBORSerializer


# The largest message the router takes: RawSocket frames hold at most 2**24 bytes; WebSocket has
# no such bound, router/.crossbar/config.json sets one.
RAWSOCKET_MAX_MESSAGE_BYTES = 2**24
WEBSOCKET_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def max_message_bytes(router_url: str) -> int:
    """The largest WAMP message the router at ``router_url`` takes."""
    return RAWSOCKET_MAX_MESSAGE_BYTES if is_rawsocket(router_url) else WEBSOCKET_MAX_MESSAGE_BYTES


def is_rawsocket(router_url: str) -> bool:
    return router_url.startswith(("rs://", "rss://"))


log = Logger()

# The feed's events cross the router as one opaque CBOR payload (WAMP payload transparency): the
# router neither decodes a batch's hits nor encodes them again for each Tailor.
FEED_ENCODING = "x_estrom_feed"


class FeedCodec(IPayloadCodec):
    """Beater's and Tailor's payload codec: the feed (api.FEED) as ``[hits, {api.MATCHES: ...}]``
    in CBOR; every other message as usual (None: not encoded)."""

    def encode(
        self, is_originating: bool, uri: str, args: list | None = None, kwargs: dict | None = None
    ) -> EncodedPayload | None:
        if not is_originating or uri != api.FEED:
            return None
        return EncodedPayload(cbor2.dumps([list(args or ()), kwargs or {}]), FEED_ENCODING, "cbor")

    def decode(
        self, is_originating: bool, uri: str, encoded_payload: EncodedPayload
    ) -> tuple[str, list, dict]:
        # autobahn drops the event, with a warning, on an error raised here.
        how = (encoded_payload.enc_algo, encoded_payload.enc_serializer)
        if uri != api.FEED or how != (FEED_ENCODING, "cbor"):
            raise ValueError(f"{uri}: an encoded payload that is not the feed's ({encoded_payload.enc_algo})")
        args, kwargs = cbor2.loads(encoded_payload.payload, max_depth=MAX_MESSAGE_DEPTH)
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise TypeError(f"{uri}: a feed payload is [hits, {{...}}]")
        return uri, args, kwargs


# RawSocket has no ping: a router that stops answering (stopped, stuck) would leave calls and
# acknowledged publications waiting for ever. So a RawSocket session asks the router, every
# ESTROM_ROUTER_HEARTBEAT_SECONDS, something it answers itself (a call nobody may make, refused
# at once); with no answer within twice that, the connection is dropped and the component
# reconnects, as WebSocket's auto-ping (10 s, 20 s) does.
HEARTBEAT_PROCEDURE = "estrom.heartbeat"


class Heartbeat:
    """Checks that the router of a joined session answers (see HEARTBEAT_PROCEDURE)."""

    def __init__(self, interval: float = 10.0, timeout: float = 20.0, clock: IReactorTime = reactor):
        self.interval, self.timeout, self.clock = interval, timeout, clock
        self._loop: LoopingCall | None = None

    def on_join(self, session: ApplicationSession, details: SessionDetails) -> None:
        self.on_leave(session, details)
        self._loop = LoopingCall(self._beat, session)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def on_leave(self, session: ApplicationSession, details: CloseDetails) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _beat(self, session: ApplicationSession) -> None:
        if not session.is_attached():
            return
        answer = session.call(HEARTBEAT_PROCEDURE)
        # Not answer.cancel() on time out: that would send the router a CANCEL.
        silence = self.clock.callLater(self.timeout, self._silent, session)
        answer.addBoth(lambda _: silence.cancel() if silence.active() else None)

    def _silent(self, session: ApplicationSession) -> None:
        if session.is_attached():
            log.warn(
                "the router did not answer for {timeout} s: dropping the connection", timeout=self.timeout
            )
            drop(session)


def drop(session: ApplicationSession) -> None:
    """Drop ``session``'s connection: the component reconnects (backing off) and joins again,
    and what waits for the router fails (see _Session). Not ``leave()``: a clean goodbye ends
    the component for good."""
    if session.transport is not None:
        session.transport.abort()


def whole_join(
    join: Callable[[ApplicationSession, SessionDetails], Awaitable[None] | None],
    failed: Callable[[str], Any] | None = None,
) -> Callable[[ApplicationSession, SessionDetails], Deferred[None]]:
    """A join listener that runs ``join`` whole or leaves the router: if any step of it fails,
    the failure is logged, counted (``failed("join")``) and the connection dropped, so the
    component joins again and ``join`` runs again from its first step.

    autobahn logs an exception raised in a join listener ("While notifying 'join'") and goes on:
    the session would stay joined with only what ``join`` did before it failed (Beater's
    procedures registered, but ingest refused for ever)."""

    async def listener(session: ApplicationSession, details: SessionDetails) -> None:
        try:
            done = join(session, details)
            if done is not None:
                await done
        except Exception:  # noqa: BLE001 - whatever failed, the session must not stay half-joined
            log.failure("joining the router failed: leaving, to join again")
            if failed is not None:
                failed("join")
            drop(session)

    return lambda session, details: Deferred.fromCoroutine(listener(session, details))


class _Session(Session):
    """A component's session that fails what waits for the router when the session ends.

    autobahn's Session (what a Component makes) replaces ApplicationSession's onLeave and
    onDisconnect, which errback outstanding calls and acknowledged publications, with handlers
    that only disconnect: when the connection drops, they would wait for ever, and so would the
    sender or the stream that waits for them."""

    def on_leave(self, details: CloseDetails) -> None:
        return protocol.ApplicationSession.onLeave(self, details)  # errbacks, then disconnects

    def on_disconnect(self):
        return protocol.ApplicationSession.onDisconnect(self)


def component(
    router_url: str, realm: str, authentication: dict[str, Any] | None = None, heartbeat: float = 10.0
) -> Component:
    """A component that connects to ``router_url`` and reconnects forever, backing off to 5 s;
    it checks every ``heartbeat`` seconds that the router answers (WebSocket: by ping)."""
    transport = {
        "url": router_url,
        "max_retries": -1,
        "initial_retry_delay": 0.25,
        "retry_delay_growth": 1.5,
        "max_retry_delay": 5.0,
    }
    if is_rawsocket(router_url):
        transport.update(type="rawsocket", serializer="cbor")
    else:
        transport.update(
            type="websocket",
            serializers=["cbor"],
            options={"autoPingInterval": heartbeat, "autoPingTimeout": 2 * heartbeat},
        )
    wamp = Component(
        transports=[transport],
        realm=realm,
        authentication=authentication or {},
        session_factory=_Session,
    )
    if is_rawsocket(router_url):
        beats = Heartbeat(heartbeat, 2 * heartbeat)
        wamp.on("join", beats.on_join)
        wamp.on("leave", beats.on_leave)
    return wamp
