"""What the HTTP services share: JSON answers (every error a user can cause is
``{"error": "..."}``), the resource tree, and ``GuardedSite``, which decides what gets in at all.

``GuardedSite`` answers only for the host names it is told to (a web page that rebinds its own
DNS name to 127.0.0.1 can otherwise use a local service: https://en.wikipedia.org/wiki/DNS_rebinding),
gives a client a deadline to send a whole request, and caps the connections it keeps open.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ITCPTransport, ITransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, TimeoutMixin
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import directlyProvides, providedBy

from estrom.tokens import ANONYMOUS, Principal, TokenFile, TokenFileError, from_authorization

log = Logger()

LOOPBACK_HOSTS = "127.0.0.1,localhost,::1"


def token_file(path: str, host: str, service: str) -> TokenFile | None:
    """The TokenFile at ``path`` (watched for changes), or None without one; ValueError if it
    cannot be read, or if a service without one would listen beyond loopback (where anyone who
    reaches it could send and read)."""
    if not path:
        if not is_loopback(host):
            raise ValueError(
                f"{service} listens on {host} without ESTROM_TOKENS: anyone who reaches it could send "
                "and read. Give it a token file (estrom token add), or listen on 127.0.0.1"
            )
        return None
    try:
        tokens = TokenFile(path)
    except TokenFileError as e:
        raise ValueError(str(e)) from None
    tokens.watch()
    return tokens


def is_loopback(host: str) -> bool:
    """Whether the interface ``host`` is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


ANY_HOST = "*"
# How long a refused or timed-out client may take to read its answer before it is cut off.
LINGER_SECONDS = 2.0


# Statuses Twisted has no reason phrase for (its status line would say "Unknown Status"). 421
# (RFC 9110, section 15.5.20) says "this server is not the one for that name", which is what a
# foreign Host is; 403 would read as "no permission".
_REASONS = {421: b"Misdirected Request", 422: b"Unprocessable Content", 429: b"Too Many Requests"}


def json_answer(request: Request, code: int, body: Any, headers: dict[str, str] | None = None) -> bytes:
    """Set ``request``'s status and headers for ``body`` as JSON, and return its bytes: what a
    ``render`` method returns. Every JSON answer of Beater's and Tailor's is made here."""
    request.setResponseCode(code, _REASONS.get(code))
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in (headers or {}).items():
        request.setHeader(name.encode(), value.encode())
    return json.dumps(body).encode("utf-8") + b"\n"


def error_answer(request: Request, code: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    """``json_answer`` of ``{"error": message}``."""
    return json_answer(request, code, {"error": message}, headers)


def send_json(request: Request, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
    """Answer ``request`` later (after NOT_DONE_YET) with ``body`` as JSON, unless it was
    answered already or the client has gone."""
    if answered_or_gone(request):
        return
    request.write(json_answer(request, code, body, headers))
    request.finish()


def answered_or_gone(request: Request) -> bool:
    """Whether ``request`` was answered, or its client went away (GuardedSite learns that from
    ``notifyFinish()``: a request that did not come through one is taken as still there)."""
    return request.finished or getattr(request, "lost", False)


def send_error(request: Request, code: int, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer ``request`` later with ``{"error": message}``."""
    send_json(request, code, {"error": message}, headers)


class JsonResource(Resource):
    """The base of Beater's and Tailor's resources: they answer in JSON, errors as
    ``{"error": "..."}``, a method outside ``allowedMethods`` with a 405 (Twisted's own is an
    HTML page). Subclasses define ``render_<METHOD>`` as Twisted's resources do (HEAD is GET)."""

    allowedMethods: tuple[bytes, ...] = (b"GET", b"HEAD")

    def render(self, request: Request) -> bytes | int:
        if request.method not in self.allowedMethods:
            use = " or ".join(method.decode("ascii") for method in self.allowedMethods)
            allow = ", ".join(method.decode("ascii") for method in self.allowedMethods)
            return error_answer(request, 405, f"method not allowed: use {use}", {"Allow": allow})
        return super().render(request)


class ErrorResource(JsonResource):
    """The same JSON error for every method."""

    isLeaf = True

    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__()
        self.code, self.message, self.headers = code, message, headers

    def render(self, request: Request) -> bytes:
        return error_answer(request, self.code, self.message, self.headers)


class NotFound(ErrorResource):
    """A JSON 404 for every path that is not the API's, instead of Twisted's HTML page."""

    def __init__(self) -> None:
        super().__init__(404, "not found: the API is at /api/v0.1/docs")


class Branch(JsonResource):
    """A path segment whose only answers are its children's: JSON 404 for anything else."""

    def getChild(self, name: bytes, request: Request) -> Resource:
        return NotFound()

    def render(self, request: Request) -> bytes:
        return NotFound().render(request)


def answer_later(request: Request, answering: Coroutine[Any, Any, None], what: str) -> int:
    """Run ``answering``, which answers ``request``; a bug in it answers 500 (and is logged)."""
    Deferred.fromCoroutine(answering).addErrback(
        lambda failure: (log.failure(f"{what} failed", failure), send_error(request, 500, "internal error"))
    )
    return NOT_DONE_YET


def api_root(docs: Resource, **more: Resource) -> Resource:
    """The resource tree of a service: ``docs`` at ``/api/v0.1/docs``, and each of ``more`` at
    ``/api/v0.1/<its name>``."""
    root, api, version = Branch(), Branch(), Branch()
    root.putChild(b"api", api)
    api.putChild(b"v0.1", version)
    version.putChild(b"docs", docs)
    for name, resource in more.items():
        version.putChild(name.encode(), resource)
    return root


@dataclass(frozen=True)
class SiteLimits:
    """What a ``GuardedSite`` lets in.

    ``allowed_hosts``: the host names a request's ``Host`` header may name (lower-case, IPv6
    addresses without brackets; ``*`` allows any); ``request_deadline``: seconds from the first
    byte of a request to its last, head and body; ``max_connections``: connections open at once.
    """

    allowed_hosts: frozenset[str] = frozenset(LOOPBACK_HOSTS.split(","))
    request_deadline: float = 30.0
    max_connections: int = 1024

    def __post_init__(self) -> None:
        if not self.allowed_hosts:
            raise ValueError("ESTROM_ALLOWED_HOSTS names no host: every request would be refused")
        if self.request_deadline <= 0:
            raise ValueError("ESTROM_REQUEST_DEADLINE_SECONDS must be positive")
        if self.max_connections < 1:
            raise ValueError("ESTROM_MAX_CONNECTIONS must be at least 1")

    @classmethod
    def parse(cls, allowed_hosts: str, request_deadline: float, max_connections: int) -> SiteLimits:
        """The limits the settings give; ``allowed_hosts`` is comma-separated (``localhost,[::1]``)."""
        hosts = frozenset(_normalise(host) for host in allowed_hosts.split(",") if host.strip())
        return cls(hosts, request_deadline, max_connections)

    def allows(self, host: str) -> bool:
        """Whether ``host`` (as ``request_host`` returns it) is served."""
        return ANY_HOST in self.allowed_hosts or host in self.allowed_hosts


def request_host(request: Request) -> str | None:
    """The host ``request`` names in its one ``Host`` header (lower-case, without port or IPv6
    brackets), or None when it has none, several, or one that is not ``host[:port]``."""
    values = request.requestHeaders.getRawHeaders(b"host") or []
    if len(values) != 1:
        return None
    try:
        value = values[0].decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if value.startswith("["):  # an IPv6 literal: [::1]:8070 (RFC 3986, section 3.2.2)
        host, bracket, port = value[1:].partition("]")
        if not bracket:
            return None
    else:
        host, colon, port = value.partition(":")
        port = colon + port
    if port and not re.fullmatch(r":[0-9]*", port):
        return None
    host = _normalise(host)
    return host or None


def _normalise(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    # `localhost.` is `localhost`, fully qualified.
    return host[:-1] if host.endswith(".") and host != "." else host


class GuardedSite(Site):
    """A ``Site`` that lets in only what ``limits`` (a SiteLimits) allow.

    - A request whose ``Host`` is not one of ``limits.allowed_hosts`` gets a JSON 421 before any
      resource sees it.
    - A request must arrive whole, head and body, within ``limits.request_deadline`` seconds of
      its first byte, or the client gets a JSON 408 and the connection is closed. Twisted's idle
      timeout alone restarts with every byte, so one byte a minute would hold a connection open
      for ever. Sending the response is not limited (Tailor's streams are endless), nor is an
      idle keep-alive connection, which Twisted's idle timeout closes.
    - Past ``limits.max_connections`` open connections, a new one gets a JSON 503 with
      ``Retry-After`` at once, its request unread, and is closed.

    - With ``tokens`` (a TokenFile), a request for anything but ``open_paths`` must show a valid
      token (see estrom.tokens), else a JSON 401 with ``WWW-Authenticate``; the request's
      ``principal`` is the token's. Without, every request is ANONYMOUS.
    - A line per request in the log (Twisted's access log) only if ``access_log`` is true;
      each answer's status counted in ``metrics``, if set.

    Time is ``reactor`` (``Site``'s keyword argument), so a test can pass a Clock. ``limits``
    and ``access_log`` may be assigned after construction too (a subclass's constructor may not
    pass them on), as long as it is before the site listens.
    """

    def __init__(
        self,
        resource: Resource,
        *args: Any,
        limits: SiteLimits | None = None,
        access_log: bool = False,
        tokens: TokenFile | None = None,
        **kwargs: Any,
    ):
        # A POST's body is never read as a form into ``request.args`` (Twisted's default, done
        # before any resource sees the request: parsing its Content-Type alone cost Beater about
        # 3 % of its CPU): estrom's arguments are in the URL, and a body is what a resource reads.
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(resource, *args, **kwargs)
        self.limits = limits or SiteLimits()
        self.access_log = access_log
        self.tokens = tokens
        self.open_paths: frozenset[bytes] = frozenset()
        self.metrics: Any = None  # an estrom.metrics registry: answers counted by status
        self.connections: set[_Connection] = set()
        self._refusing = False

    def buildProtocol(self, addr: IAddress) -> Protocol:
        # As twisted.protocols.policies.LimitTotalConnectionsFactory does, but it cannot wrap a
        # Site: it makes its protocol without the address (Site.buildProtocol makes the HTTP
        # channel from it), and counts the refused connections with the open ones.
        if len(self.connections) >= self.limits.max_connections:
            if not self._refusing:  # once per episode: a flood must not flood the log too
                log.warn(
                    "{count} connections open (ESTROM_MAX_CONNECTIONS): new ones get 503",
                    count=len(self.connections),
                )
                self._refusing = True
            return _Busy(self.reactor)
        channel = super().buildProtocol(addr)
        connection = _Connection(self, channel)
        channel.requestFactory = connection.watch(channel.requestFactory)
        return connection

    # ProtocolWrapper's bookkeeping (WrappingFactory's interface): the connections open.

    def registerProtocol(self, connection: _Connection) -> None:
        self.connections.add(connection)

    def unregisterProtocol(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        if len(self.connections) < self.limits.max_connections:
            self._refusing = False

    def log(self, request: Request) -> None:
        # Twisted calls this once per answered request.
        if self.metrics is not None:
            self.metrics.answered(request.code)
        if self.access_log:
            super().log(request)

    def getResourceFor(self, request: Request) -> Resource:
        # Twisted calls this once the request has arrived whole, before anything renders it.
        connection = getattr(getattr(request, "channel", None), "transport", None)
        if isinstance(connection, _Connection):
            connection.received(request)
        _watch(request)
        host = request_host(request)
        if host is None:
            return ErrorResource(421, "the request must name the host it is for in one Host header")
        if not self.limits.allows(host):
            return ErrorResource(
                421, f"this server does not answer for host {host[:200]!r} (see ESTROM_ALLOWED_HOSTS)"
            )
        if self.authenticate(request) is None and request.path not in self.open_paths:
            return _unauthorized(request)
        return super().getResourceFor(request)

    def authenticate(self, request: Request) -> Principal | None:
        """The principal whose token ``request`` shows (ANONYMOUS without a token file), or
        None; kept as ``request.principal``."""
        if not hasattr(request, "principal"):
            if self.tokens is None:
                request.principal = ANONYMOUS
            else:
                shown = from_authorization(request.getHeader(b"authorization"))
                request.principal = self.tokens.check(shown[1], shown[0]) if shown else None
        return request.principal


def _watch(request: Request) -> None:
    """Note on ``request`` (``lost``) when its client goes away before it is answered."""

    def lost(_: Any) -> None:
        request.lost = True

    request.notifyFinish().addErrback(lost)


# Who a request is, for a request that did not come through a GuardedSite: no one.
NOBODY = Principal("nobody")


def principal_of(request: Request) -> Principal:
    """Who sent ``request`` (see GuardedSite.authenticate)."""
    return getattr(request, "principal", None) or NOBODY


def _unauthorized(request: Request) -> ErrorResource:
    message = (
        "the token is not valid"
        if request.getHeader(b"authorization") is not None
        else "this estrom needs a token: 'Authorization: Bearer <token>', or basic auth with "
        "the token's name and the token"
    )
    return ErrorResource(401, message, {"WWW-Authenticate": 'Bearer realm="estrom", Basic realm="estrom"'})


class _Connection(TimeoutMixin, ProtocolWrapper):
    """One connection of a ``GuardedSite``, and the transport of its HTTP channel.

    The deadline (Twisted's TimeoutMixin, set once and never reset by the bytes that arrive)
    starts with a byte that arrives while no request is being answered, and ends when the request
    has arrived whole (``received``); bytes that arrive while a request is being answered wait in
    the channel (pipelining), so their deadline starts once it has been.
    """

    def __init__(self, site: GuardedSite, channel: Protocol):
        super().__init__(site, channel)
        self._clock: IReactorTime = site.reactor
        self.callLater = self._clock.callLater  # TimeoutMixin's clock
        self._seconds = site.limits.request_deadline
        self._answering: set[Request] = set()  # received whole, not answered yet
        self._unparsed = False  # bytes arrived while answering
        self._expired = False
        self._closed = False
        self._abort: IDelayedCall | None = None

    def watch(self, make_request: Callable[..., Request]) -> Callable[..., Request]:
        """``make_request``, the channel's request factory, telling us when each request ends."""

        def factory(*args: Any, **kwargs: Any) -> Request:
            request = make_request(*args, **kwargs)
            request.notifyFinish().addBoth(lambda _: self._answered(request))
            return request

        # The channel calls a factory that provides INonQueuedRequestFactory differently.
        directlyProvides(factory, providedBy(make_request))
        return factory

    def dataReceived(self, data: bytes) -> None:
        if self._expired:
            return  # answered 408: what else arrives is not read
        if self._answering:
            self._unparsed = True
        elif self.timeOut is None:
            self.setTimeout(self._seconds)
        super().dataReceived(data)

    def received(self, request: Request) -> None:
        """``request`` has arrived whole: its deadline is met."""
        self.setTimeout(None)
        self._answering.add(request)
        self._unparsed = False  # what arrived meanwhile may have been this very request

    def connectionLost(self, reason: Any) -> None:
        self._closed = True
        self.setTimeout(None)
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        super().connectionLost(reason)

    def _answered(self, request: Request) -> None:
        if request in self._answering:
            self._answering.discard(request)
        else:
            # Answered without passing getResourceFor (Twisted answers `OPTIONS *` itself), so it
            # did arrive whole.
            self.setTimeout(None)
        if self._unparsed and not self._answering and not self._closed:
            # The channel now parses what arrived meanwhile; if it held a whole request, that one
            # has been received already (and cleared `_unparsed`).
            self._unparsed = False
            self.setTimeout(self._seconds)

    def timeoutConnection(self) -> None:
        self._expired = True
        log.info(
            "no whole request from {peer} within {seconds} s: 408", peer=self.getPeer(), seconds=self._seconds
        )
        answer = _canned(
            "408 Request Timeout", f"the request did not arrive whole within {self._seconds:g} s"
        )
        self._abort = _answer_and_close(self.transport, answer, self._clock)


class ByteBudget:
    """Bytes a whole process holds for its clients at most (request bodies in Beater, hits not
    yet sent in Tailor), whichever clients hold them: bounds per request or per stream alone let
    many clients together hold gigabytes."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._holders: dict[Any, int] = {}  # by holder, for those that say who they are

    def take(self, count: int, holder: Any = None) -> bool:
        """Hold ``count`` more bytes (for ``holder``), if that stays within the limit; whether
        it did."""
        if self.held + count > self.limit:
            return False
        self.held += count
        if holder is not None:
            self._holders[holder] = self._holders.get(holder, 0) + count
        return True

    def give(self, count: int, holder: Any = None) -> None:
        self.held -= count
        if holder is not None:
            left = self._holders.pop(holder, 0) - count
            if left > 0:
                self._holders[holder] = left

    def largest(self) -> tuple[Any, int]:
        """The holder that holds the most, and how much (None, 0 without holders)."""
        holder = max(self._holders, key=self._holders.__getitem__, default=None)
        return holder, self._holders.get(holder, 0)


def refuse_now(request: Request, status: str, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer ``request`` (``status`` as "429 Too Many Requests") with ``{"error": message}`` at
    once, while its body may still be arriving, and close the connection (what still arrives
    is read and dropped). Counted with the site's answers."""
    site = request.channel.site
    if getattr(site, "metrics", None) is not None:
        site.metrics.answered(int(status.split()[0]))
    _answer_and_close(request.channel.transport, _canned(status, message, headers), site.reactor)


class _Busy(Protocol):
    """A connection past ``max_connections``: a 503 at once, whatever the request."""

    def __init__(self, clock: IReactorTime):
        self._clock = clock
        self._abort: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._abort = _answer_and_close(self.transport, _BUSY, self._clock)

    def connectionLost(self, reason: Any) -> None:
        if self._abort is not None and self._abort.active():
            self._abort.cancel()


def _canned(status: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response with ``{"error": message}``, for a connection about to close."""
    body = json.dumps({"error": message}).encode("utf-8") + b"\n"  # no request to answer: by hand
    head = [
        f"HTTP/1.1 {status}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


_BUSY = _canned("503 Service Unavailable", "too many connections: retry later", {"Retry-After": "1"})


def _answer_and_close(transport: ITransport, answer: bytes, clock: IReactorTime) -> IDelayedCall:
    """Write ``answer`` and close the connection; the returned call aborts it if the client has
    not closed its side within LINGER_SECONDS (cancel the call when the connection is lost)."""
    transport.write(answer)
    if ITCPTransport.providedBy(transport):
        # Close our side only and keep reading: closing with the client's request unread would
        # send a reset, and a reset can make the client drop the answer before reading it.
        transport.loseWriteConnection()
    else:
        transport.loseConnection()
    # A client that neither reads nor closes is cut off.
    return clock.callLater(LINGER_SECONDS, transport.abortConnection)
