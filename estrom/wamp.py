"""How the services connect to the router: one place for transports, retry and logging."""

from __future__ import annotations

from typing import Any

import cbor2
from autobahn.twisted.component import Component
from autobahn.wamp import serializer

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


def component(router_url: str, realm: str, authentication: dict[str, Any] | None = None) -> Component:
    """A component that connects to ``router_url`` and reconnects forever, backing off to 5 s."""
    return Component(
        transports=[
            {
                "type": "websocket",
                "url": router_url,
                "serializers": ["cbor"],
                "max_retries": -1,
                "initial_retry_delay": 0.25,
                "retry_delay_growth": 1.5,
                "max_retry_delay": 5.0,
                "options": {"autoPingInterval": 10, "autoPingTimeout": 20},
            }
        ],
        realm=realm,
        authentication=authentication or {},
    )
