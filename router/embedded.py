"""What the router's embedded components (authorizer.py, readers.py) share: a start that fails
stops the router.

crossbar logs an exception raised in an embedded component's ``onJoin`` ("While firing onJoin")
and goes on serving without it: a router whose slow-reader bound failed to install would hold
without limit for a client that does not read, one whose authorizer failed would refuse every
reader, and both would look up. An embedded session cannot join again by itself (crossbar does
not restart components), so a component whose start fails stops the router worker, saying why,
and crossbar's node stops with it (its default ``shutdown_on_worker_exit``): whatever supervises
the router (compose's ``restart``, systemd, ``make up``) sees it and starts it again.
"""

from __future__ import annotations

import os

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import SessionDetails
from twisted.internet import reactor

# The exit status of a router worker whose component failed to start.
FAILED_TO_START = 3


class Embedded(ApplicationSession):
    """An embedded component: ``start`` does what its ``onJoin`` would, whole or not at all."""

    async def start(self, details: SessionDetails) -> None:
        raise NotImplementedError

    async def onJoin(self, details: SessionDetails) -> None:
        try:
            await self.start(details)
        except Exception:  # noqa: BLE001 - whatever failed, the router must not serve without it
            self.log.failure(
                "the router's component {name} failed to start: stopping the router",
                name=type(self).__name__,
            )
            # Let the log line reach the node's log first; then the worker exits, and the node.
            reactor.callLater(0.5, os._exit, FAILED_TO_START)
