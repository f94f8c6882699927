"""Who gets into realm ``estrom``, and what readers (role ``client``) may do there: decided inside
the router.

Authentication (``router.authenticate``, crossbar's dynamic authenticator for WAMP-Ticket and
anonymous sessions): Beater is admitted with the ticket ``$ESTROM_BEATER_SECRET`` (role
``beater``), Tailor with ``$ESTROM_TAILOR_SECRET`` (role ``tailor``: it may also subscribe to the
feed, api.FEED, and checks its clients' tokens itself); a reader with a token of the token file ``$ESTROM_TOKENS`` as its ticket (role
``client``, authid the token's name; see estrom/tokens.py, which this module shares with Beater
and Tailor). Without a token file, anonymous sessions are readers of everything (``make up`` on
127.0.0.1); with one, they are refused.

crossbar's static permissions look at the URI and the action only, not at the subscribe options:
a role allowed to subscribe to ``docs-for-`` could subscribe with ``match: "prefix"`` and receive
the hits of every query. This component runs embedded in the router worker (see the worker's
``components`` in ``.crossbar/config.json``) and registers the role's dynamic authorizer, which is
called with the subscribe options too. It runs before the router listens, needs nothing else
(not Beater), and fails closed: while it is not registered, crossbar refuses the role everything.

With a token file, a reader may subscribe only to the topics of queries on the indexes its
token may read: the index of a topic's query is asked of Beater (``estrom.lookup``) once and kept.
``estrom.register`` / ``lookup`` / ``backlog`` / ``summary`` are checked by Beater, to which the router
discloses the caller.

It also puts the router worker's recursion limit back to Python's default (see
:func:`restore_recursion_limit`), and makes its debug-log arguments cheap (quietlog.py). It runs
in the router's Python (``.venv-router``, crossbar's autobahn), so it uses nothing else.
"""

from __future__ import annotations

import hmac
import os
import re
import sys
import time
from collections import OrderedDict
from typing import Any

from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import SessionDetails
from embedded import Embedded
from quietlog import quiet_debug_arguments
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred

from estrom import api
from estrom.coalesce import Coalesce
from estrom.tokens import TokenFile

# Outside "estrom.", where Beater may register: no other session can take these names over.
PROCEDURE = "router.authorize"
AUTHENTICATOR = "router.authenticate"
# Topics whose query's index the authorizer keeps (an ID is the hash of its index and query:
# its index never changes), and how long it believes that no query has an ID.
KNOWN_TOPICS = 10_000
UNKNOWN_SECONDS = 5.0
# How long a subscription waits for Beater to say which index its topic's query is on; then it is
# refused (and asked again at the next subscription).
LOOKUP_SECONDS = 10.0

CALLABLE = frozenset({"estrom.register", "estrom.lookup", "estrom.backlog", "estrom.summary"})
TOPIC = re.compile(r"docs-for-[0-9a-f]{16}")
# What a subscriber may ask for besides the topic; "forward_for" is for router-to-router links.
SUBSCRIBE_OPTIONS = frozenset({"match", "get_retained"})
# What a caller may ask for (autobahn-python's and autobahn-js's options).
CALL_OPTIONS = frozenset({"timeout", "receive_progress", "disclose_me"})


def _decision(allow: bool, cache: bool = False) -> dict[str, bool]:
    # crossbar caches a decision by (realm, role, URI, action), not by options nor by session,
    # and never forgets it: an exact subscription's "allow" must not be reused for a prefix one on
    # the same URI (or for another reader), and a cached refusal per URI a client makes up would
    # grow without bound. So nothing is cached. A new dict each time: an embedded session's
    # result reaches crossbar as this very object.
    return {"allow": allow, "disclose": False, "cache": cache}


def authorize(
    session: dict[str, Any], uri: str, action: str, options: dict[str, Any] | None
) -> dict[str, bool]:
    """The decision for a ``client`` or ``tailor`` session: call ``estrom.register`` / ``lookup`` /
    ``backlog`` / ``summary``, and subscribe to one ``docs-for-<16 hex digits>`` topic with match
    ``exact`` (a Tailor to the feed, api.FEED, too); nothing else (publish, register, other calls,
    prefix or wildcard subscriptions, the ``wamp.*`` meta API).

    ``session`` is crossbar's dict of the session's details; another role is refused everything.
    """
    role = session.get("authrole")
    if role not in ("client", api.TAILOR_ROLE):
        return _decision(False)
    # A call is disclosed: Beater checks which indexes the caller's token may read. crossbar
    # discloses the first "forward_for" entry of a call's options as its caller (for
    # router-to-router links): a client that sent one would pass for whoever it named. So calls
    # carry only the options autobahn's clients send, and no decision is cached (a cached one is
    # not asked about the next call's options).
    if action == "call" and uri in CALLABLE and set(options or {}) <= CALL_OPTIONS:
        return {"allow": True, "disclose": True, "cache": False}
    # The feed carries the hits of every query a Tailor listens to: for Tailors alone.
    if action == "subscribe" and (TOPIC.fullmatch(uri) or (uri == api.FEED and role == api.TAILOR_ROLE)):
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


class Authorizer(Embedded):
    """Registers ``router.authenticate`` and ``router.authorize``; crossbar starts the router's
    transports only once this ``onJoin`` is done, so no client gets in before they are there.

    ``extra`` (the component's, in config.json) may name more principals admitted by ticket,
    ``{"principals": {authid: {"ticket": ..., "role": ...}}}`` (the tests' watcher)."""

    tokens: TokenFile | None = None  # with ESTROM_TOKENS, its tokens
    with_tokens = False  # whether ESTROM_TOKENS is set

    async def start(self, details: SessionDetails) -> None:
        previous = restore_recursion_limit()
        self.log.info("recursion limit {previous} -> {limit}", previous=previous, limit=RECURSION_LIMIT)
        if quiet_debug_arguments():
            self.log.info("debug-log arguments are built only when printed")
        self.principals = {
            "beater": {"ticket": os.environ.get("ESTROM_BEATER_SECRET", ""), "role": "beater"},
            # Unset: no session is admitted as Tailor (an empty ticket matches nothing).
            "tailor": {"ticket": os.environ.get("ESTROM_TAILOR_SECRET", ""), "role": api.TAILOR_ROLE},
        }
        self.principals.update((self.config.extra or {}).get("principals", {}))
        path = os.environ.get("ESTROM_TOKENS", "")
        self.with_tokens = bool(path)
        if path:
            # Not strict: an unreadable file admits no reader until it can be read (logged).
            self.tokens = TokenFile(path, strict=False)
            self.tokens.on_change.append(self._revoked)
            self.tokens.watch()
        self.log.info("readers: {who}", who=f"tokens of {path}" if path else "anonymous (no ESTROM_TOKENS)")
        # By query ID: its index, or None (no query has it) with the time that was found.
        self._indexes: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._looking_up = Coalesce()
        await self.register(self.authenticate, AUTHENTICATOR)
        await self.register(self.authorize, PROCEDURE)
        self.log.info("estrom authenticator and authorizer registered")

    def authenticate(self, realm: str, authid: str | None, details: dict[str, Any]) -> dict[str, Any]:
        """crossbar's dynamic authenticator: the principal (role, authid) of a session that
        says it is ``authid``, by WAMP-Ticket or anonymous; ApplicationError refuses it."""
        if details.get("authmethod") == "ticket":
            ticket = details.get("ticket")
            if not isinstance(ticket, str):
                raise ApplicationError(api.NOT_AUTHENTICATED, "a ticket is a string")
            known = self.principals.get(authid or "")
            if known is not None:
                if known["ticket"] and hmac.compare_digest(known["ticket"].encode(), ticket.encode()):
                    return {"role": known["role"], "authid": authid}
                raise ApplicationError(api.NOT_AUTHENTICATED, "the ticket is not valid")
            reader = self.tokens.check(ticket, authid) if self.tokens is not None else None
            if reader is None:
                raise ApplicationError(api.NOT_AUTHENTICATED, "the token is not valid")
            return {"role": "client", "authid": reader.name}
        if not self.with_tokens:
            return {"role": "client"}
        raise ApplicationError(
            api.NOT_AUTHENTICATED, "this router admits readers with a token only (WAMP-Ticket: the token)"
        )

    async def authorize(
        self, session: dict[str, Any], uri: str, action: str, options: dict[str, Any] | None
    ) -> dict[str, bool]:
        """The decision of :func:`authorize`, and with a token file, for a subscription: whether
        the reader's token may read the index of the topic's query."""
        decision = authorize(session, uri, action, options)
        if not decision["allow"] or action != "subscribe" or not self.with_tokens:
            return decision
        if session.get("authrole") == api.TAILOR_ROLE:
            return decision  # admitted by its secret: it checks its clients' tokens itself
        reader = self.tokens.principal(session.get("authid")) if self.tokens is not None else None
        if reader is None:
            return _decision(False)
        if reader.reads_everything:
            return decision
        index = await self._index(uri[len(api.TOPIC_PREFIX) :])
        return decision if index is not None and reader.may_read(index) else _decision(False)

    async def _index(self, query_id: str) -> str | None:
        """The index of the query ``query_id`` (asked of Beater once, however many subscribe at
        the same time), or None if no query has it (asked again after UNKNOWN_SECONDS: a reader
        subscribing to made-up topics costs the engine one lookup per ID and that time)."""
        known = self._indexes.get(query_id)
        if known is not None and (known[0] is not None or time.monotonic() - known[1] < UNKNOWN_SECONDS):
            return known[0]
        return await self._looking_up.run(query_id, lambda: Deferred.fromCoroutine(self._lookup(query_id)))

    async def _lookup(self, query_id: str) -> str | None:
        try:
            found = await self.call(api.LOOKUP, query_id).addTimeout(LOOKUP_SECONDS, reactor)
        except (defer.TimeoutError, defer.CancelledError, TransportLost):
            self.log.warn(
                "no answer from Beater within {seconds} s about the index of {query_id}: refused",
                seconds=LOOKUP_SECONDS,
                query_id=query_id,
            )
            return None
        except ApplicationError as e:
            if e.error != api.UNKNOWN_SUBSCRIPTION:
                return None  # no Beater, or busy: refused now, asked again next time
            index = None
        else:
            index = found["index"]
        self._indexes[query_id] = (index, time.monotonic())
        self._indexes.move_to_end(query_id)
        if len(self._indexes) > KNOWN_TOPICS:
            self._indexes.popitem(last=False)
        return index

    def _revoked(self, names: set[str]) -> None:
        """Cut off the sessions of tokens removed from the file or changed in it: their holders
        join again if their token is still valid, with what it may do now."""
        for name in names:
            self.call(
                "wamp.session.kill_by_authid",
                name,
                reason=api.NOT_AUTHENTICATED,
                message="the token was removed or changed",
            ).addErrback(
                lambda failure, name=name: self.log.warn(
                    "cutting off the sessions of token {name}: {error}",
                    name=name,
                    error=failure.getErrorMessage(),
                )
            )
