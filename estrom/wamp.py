"""How the services connect to the router: one place for transports, retry and logging."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.component import Component


def component(router_url: str, realm: str, authentication: dict[str, Any] | None = None) -> Component:
    """A component that connects to ``router_url`` and reconnects forever, backing off to 5 s."""
    return Component(
        transports=[
            {
                "type": "websocket",
                "url": router_url,
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
