"""A bound on what the router holds for a WAMP client that does not read its events.

crossbar writes every event into the connection's Twisted transport, whose write buffer has no
limit, and registers no producer that could say "this peer is not reading" (crossbar #583,
#874). So one browser tab that stops reading (or reads just enough to answer pings) makes the
router keep everything published to it: measured, 2 MB/s to one such subscriber grew the
worker by 58 MB before the ping timeout dropped it, and the memory was not given back.

This component, embedded in the router worker beside the authorizer, wraps the router's one
place of sending (``Router.send``): before an event goes to an anonymous (``client``) session
whose connection already holds more than ``max_pending_bytes`` unsent, the connection is closed
instead. The client sees its connection lost and reconnects (the page and ``estrom tail`` do,
and mark the gap); the router frees what it held at once. Beater and Tailor (other roles) are
never cut off: Tailor bounds what it keeps per HTTP client itself.
"""

from __future__ import annotations

import inspect
from typing import Any

from autobahn.wamp import message
from autobahn.wamp.types import SessionDetails
from crossbar.router.router import Router
from crossbar.router.session import RouterSession
from embedded import Embedded
from twisted.internet import abstract

DEFAULT_MAX_PENDING_BYTES = 2 * 1024 * 1024
BOUNDED_ROLES = frozenset({"client"})


def pending_bytes(connection: Any) -> int:
    """Bytes written to ``connection`` (a Twisted TCP transport) but not yet sent.

    Twisted keeps them in ``dataBuffer`` (from ``offset`` on) and ``_tempDataBuffer``; a
    transport that is not a plain TCP one (TLS) counts as 0: it is not bounded here.
    """
    buffered = getattr(connection, "dataBuffer", b"")
    return len(buffered) - getattr(connection, "offset", 0) + getattr(connection, "_tempDataLen", 0)


class _Reactor:
    """Enough of a reactor for a FileDescriptor to take writes."""

    def addWriter(self, writer: Any) -> None:
        pass

    def removeWriter(self, writer: Any) -> None:
        pass


def check() -> None:
    """What :func:`bound` relies on in crossbar and Twisted, there and working as it expects:
    RuntimeError says what is not (an upgrade changed it), and the router does not start."""
    if list(inspect.signature(Router.send).parameters) != ["self", "session", "msg"]:
        raise RuntimeError(
            f"crossbar's Router.send is not send(self, session, msg): {inspect.signature(Router.send)}"
        )
    source = inspect.getsource(RouterSession)
    missing = [name for name in ("_transport", "_authrole", "_session_id") if f"self.{name}" not in source]
    if missing:
        raise RuntimeError(f"crossbar's RouterSession no longer sets {', '.join(missing)}")
    connection = abstract.FileDescriptor(reactor=_Reactor())
    connection.connected = True
    connection.write(b"x" * 100)
    if pending_bytes(connection) != 100:
        raise RuntimeError("Twisted's transports no longer keep unsent bytes where pending_bytes reads them")


def bound(max_pending_bytes: int, log: Any) -> None:
    """Wrap ``Router.send`` so that no bounded session is owed more than ``max_pending_bytes``."""
    check()
    send = getattr(Router.send, "estrom_unbounded", Router.send)

    def bounded_send(router: Router, session: Any, msg: message.Message) -> None:
        transport = session._transport
        if (
            transport is not None
            and isinstance(msg, message.Event)
            and session._authrole in BOUNDED_ROLES
            and pending_bytes(transport.transport) > max_pending_bytes
        ):
            log.warn(
                "closing session {session}: it holds {pending} unsent bytes (more than {limit}): "
                "it does not read its events",
                session=session._session_id,
                pending=pending_bytes(transport.transport),
                limit=max_pending_bytes,
            )
            transport.transport.abortConnection()  # frees the buffer now; the session detaches
            session._transport = None  # send nothing more to it meanwhile
            return
        send(router, session, msg)

    bounded_send.estrom_unbounded = send
    Router.send = bounded_send


class SlowReaders(Embedded):
    """Installs :func:`bound` when the router worker starts (``extra.max_pending_bytes``)."""

    async def start(self, details: SessionDetails) -> None:
        limit = int((self.config.extra or {}).get("max_pending_bytes", DEFAULT_MAX_PENDING_BYTES))
        bound(limit, self.log)
        self.log.info("estrom: anonymous sessions are closed past {limit} unsent bytes", limit=limit)
