"""What anonymous WAMP clients (role ``client``) may do on realm ``estrom``: decided inside the router.

crossbar's static permissions look at the URI and the action only, not at the subscribe options:
a role allowed to subscribe to ``docs-for-`` could subscribe with ``match: "prefix"`` and receive
the hits of every query. This component runs embedded in the router worker (see the worker's
``components`` in ``.crossbar/config.json``) and registers the role's dynamic authorizer, which is
called with the subscribe options too. It runs before the router listens, needs nothing else
(not Beater), and fails closed: while it is not registered, crossbar refuses the role everything.

It also puts the router worker's recursion limit back to Python's default (see
:func:`restore_recursion_limit`), and makes its debug-log arguments cheap (quietlog.py). It runs
in the router's Python (``.venv-router``, crossbar's autobahn), so it uses nothing else.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import SessionDetails
from quietlog import quiet_debug_arguments

# Outside "estrom.", where Beater may register: no other session can take this name over.
PROCEDURE = "router.authorize"

CALLABLE = frozenset({"estrom.register", "estrom.lookup", "estrom.backlog"})
TOPIC = re.compile(r"docs-for-[0-9a-f]{16}")
# What a subscriber may ask for besides the topic; "forward_for" is for router-to-router links.
SUBSCRIBE_OPTIONS = frozenset({"match", "get_retained"})


def _decision(allow: bool, cache: bool = False) -> dict[str, bool]:
    # crossbar caches a decision by (realm, role, URI, action), not by options, and never forgets
    # it: an exact subscription's "allow" must not be reused for a prefix one on the same URI, and
    # a cached refusal per URI a client makes up would grow without bound. Only the two calls,
    # which options do not change, are cached. A new dict each time: an embedded session's result
    # reaches crossbar as this very object.
    return {"allow": allow, "disclose": False, "cache": cache}


def authorize(
    session: dict[str, Any], uri: str, action: str, options: dict[str, Any] | None
) -> dict[str, bool]:
    """The decision for a ``client`` session: call ``estrom.register`` / ``lookup`` / ``backlog``, and
    subscribe to one ``docs-for-<16 hex digits>`` topic with match ``exact``; nothing else
    (publish, register, other calls, prefix or wildcard subscriptions, the ``wamp.*`` meta API).

    ``session`` is crossbar's dict of the session's details; another role is refused everything.
    """
    if session.get("authrole") != "client":
        return _decision(False)
    if action == "call" and uri in CALLABLE:
        return _decision(True, cache=True)
    if action == "subscribe" and TOPIC.fullmatch(uri):
        options = options or {}
        # An exact subscription carries no "match" (autobahn leaves the default out).
        if options.get("match", "exact") == "exact" and set(options) <= SUBSCRIBE_OPTIONS:
            return _decision(True)
    return _decision(False)


# Python's default: JSON messages nest at most about 480 levels deep (two frames a level).
RECURSION_LIMIT = 1000


def restore_recursion_limit() -> int:
    """Set the recursion limit of this process (the router worker) back to RECURSION_LIMIT; the
    limit it had.

    py_ecc, which crossbar imports, raises it to 100,000 at import. Then the router's JSON decoder
    (autobahn's, a recursive Python parser) follows a client's message 50,000 levels deep: beyond
    that it logs a traceback of 100,000 frames (18 MB), and the worker stalls for a minute writing
    it; below, a message 10,000 levels deep relayed to a CBOR peer crashes the worker (cbor2's
    encoder recurses in C with no limit). At 1,000 no message the router decodes is deeper than
    1,024 levels (msgpack's own limit), which every serializer can encode again.
    """
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(RECURSION_LIMIT)
    return previous


class Authorizer(ApplicationSession):
    """Registers :func:`authorize` as ``router.authorize``; crossbar starts the router's
    transports only once this ``onJoin`` is done, so no client gets in before it is there."""

    async def onJoin(self, details: SessionDetails) -> None:
        previous = restore_recursion_limit()
        self.log.info("recursion limit {previous} -> {limit}", previous=previous, limit=RECURSION_LIMIT)
        if quiet_debug_arguments():
            self.log.info("debug-log arguments are built only when printed")
        await self.register(authorize, PROCEDURE)
        self.log.info("estrom authorizer registered as {procedure}", procedure=PROCEDURE)
