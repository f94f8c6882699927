"""How the services connect to the router: one place for transports, retry and logging."""

from __future__ import annotations

from typing import Any

import cbor2
from autobahn.twisted.component import Component
from autobahn.wamp import serializer

from estrom.settings import setting

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


def router_url_setting() -> Any:
    """ESTROM_ROUTER_URL, of Beater and Tailor."""
    return setting(
        "rs://127.0.0.1:8080",
        "ESTROM_ROUTER_URL",
        "WAMP router URL: rs://host:port (RawSocket, the router's cheapest) or ws://host:port/ws",
    )


def is_rawsocket(router_url: str) -> bool:
    return router_url.startswith(("rs://", "rss://"))


def component(router_url: str, realm: str, authentication: dict[str, Any] | None = None) -> Component:
    """A component that connects to ``router_url`` and reconnects forever, backing off to 5 s."""
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
            type="websocket", serializers=["cbor"], options={"autoPingInterval": 10, "autoPingTimeout": 20}
        )
    return Component(
        transports=[transport],
        realm=realm,
        authentication=authentication or {},
    )
