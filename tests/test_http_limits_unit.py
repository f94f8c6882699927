"""GuardedSite (estrom.http): what Beater and Tailor let in.

Logic with a Clock and an in-memory transport (time advanced by hand), then the same over real
loopback sockets on ephemeral ports, waiting on the connection's events.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyRequest

from beater.settings import BeaterSettings
from estrom.http import LINGER_SECONDS, GuardedSite, SiteLimits, answered_or_gone, request_host, send_error
from tailor.settings import TailorSettings

ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)
# Long enough for any test machine, short enough that a missing close fails the test quickly.
WAIT = 10.0


class Pages(Resource):
    """``/fast`` answers at once; ``/slow`` is kept in ``held`` until the test answers it;
    ``/stream`` sends a first chunk and stays open, like Tailor."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Request] = []
        self.arrived: Deferred[Request] = Deferred()

    def render_GET(self, request: Request) -> bytes | int:
        if request.path == b"/fast":
            return b"fast\n"
        self.held.append(request)
        if request.path == b"/stream":
            request.write(b"first\n")
        if not self.arrived.called:
            self.arrived.callback(request)
        return NOT_DONE_YET


def site_on(clock: Clock, **limits) -> tuple[GuardedSite, Pages]:
    pages = Pages()
    return GuardedSite(pages, limits=SiteLimits(**limits), reactor=clock), pages


def connect(site: GuardedSite) -> tuple[Protocol, StringTransport]:
    protocol = site.buildProtocol(ADDRESS)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def get(path: str, host: str = "localhost:8070") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


# Host header


def dummy(*hosts: bytes) -> DummyRequest:
    request = DummyRequest([b"page"])
    for host in hosts:
        request.requestHeaders.addRawHeader(b"Host", host)
    return request


@pytest.mark.parametrize(
    "host",
    [
        b"localhost",
        b"localhost:8070",
        b"LocalHost:8070",
        b"localhost.",
        b"127.0.0.1:8090",
        b"[::1]:8070",
        b"[::1]",
    ],
)
def test_loopback_hosts_are_served_by_default(host):
    pages = Pages()
    assert GuardedSite(pages).getResourceFor(dummy(host)) is pages


@pytest.mark.parametrize(
    "hosts",
    [
        (b"attacker.example",),  # a DNS-rebinding page: its own name, now resolving to 127.0.0.1
        (b"attacker.example:8070",),
        (b"localhost.attacker.example",),
        (b"127.0.0.1.nip.io",),
        (),  # no Host
        (b"",),
        (b"localhost", b"attacker.example"),  # two Host headers
        (b"[::1",),
        (b"::1",),  # an IPv6 address must be in brackets
        (b"localhost:80x",),
        ("lócalhost".encode(),),
    ],
)
def test_other_hosts_get_421_with_a_json_error(hosts):
    request = dummy(*hosts)
    resource = GuardedSite(Pages()).getResourceFor(request)
    body = resource.render(request)
    assert request.responseCode == 421
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
    assert "host" in json.loads(body)["error"].lower()


def test_the_error_names_the_refused_host_and_the_setting():
    request = dummy(b"Attacker.Example:8070")
    body = GuardedSite(Pages()).getResourceFor(request).render(request)
    assert json.loads(body) == {
        "error": "this server does not answer for host 'attacker.example' (see ESTROM_ALLOWED_HOSTS)"
    }


def test_configured_hosts_are_served_and_star_serves_any():
    pages = Pages()
    site = GuardedSite(pages, limits=SiteLimits.parse(" Beater, [::1] ,logs.example.org. ", 30, 10))
    assert site.limits.allowed_hosts == {"beater", "::1", "logs.example.org"}
    assert site.getResourceFor(dummy(b"beater:8070")) is pages
    assert site.getResourceFor(dummy(b"logs.example.org")) is pages
    assert site.getResourceFor(dummy(b"localhost")) is not pages
    anyone = GuardedSite(pages, limits=SiteLimits.parse("*", 30, 10))
    assert anyone.getResourceFor(dummy(b"attacker.example")) is pages


def test_request_host_strips_the_port_and_brackets():
    assert request_host(dummy(b"[::1]:8070")) == "::1"
    assert request_host(dummy(b"Example.ORG:")) == "example.org"
    assert request_host(dummy(b"[::1]x")) is None


def test_both_services_default_to_loopback_names_only():
    for settings in (BeaterSettings, TailorSettings):
        assert SiteLimits.parse(settings.allowed_hosts, 30, 10).allowed_hosts == {
            "127.0.0.1",
            "localhost",
            "::1",
        }


def test_limits_that_would_refuse_everything_are_refused():
    for bad in ((" , ", 30, 10), ("localhost", 0, 10), ("localhost", 30, 0)):
        with pytest.raises(ValueError):
            SiteLimits.parse(*bad)


def test_every_request_is_checked_before_any_resource_renders():
    clock = Clock()
    site, pages = site_on(clock)
    protocol, transport = connect(site)
    protocol.dataReceived(get("/slow", host="attacker.example"))
    assert transport.value().startswith(b"HTTP/1.1 421 ")
    assert pages.held == []


def test_beater_ingest_site_is_guarded():
    # beater/__main__.py configures IngestSite's limits; they apply once it is a GuardedSite.
    from beater.ingest import IngestSite

    assert issubclass(IngestSite, GuardedSite)


@pytest.mark.parametrize(
    "kind, body",
    [
        ("application/x-www-form-urlencoded", b"format=json&q=x"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="format"\r\n\r\njson\r\n--b--\r\n',
        ),
    ],
    ids=["urlencoded", "multipart"],
)
def test_a_posted_body_is_never_taken_for_url_arguments(kind, body):
    # Twisted parses a form's body into request.args by default: a POST could then pass for
    # arguments (?format=json) its URL does not have, and a multipart body be parsed whole.
    seen = []

    class Echo(Resource):
        isLeaf = True

        def render_POST(self, request: Request) -> bytes:
            seen.append((request.args, request.content.read()))
            return b"{}"

    site = GuardedSite(Echo(), reactor=Clock())
    protocol, transport = connect(site)
    head = f"POST /_bulk?pretty=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: {kind}\r\n"
    protocol.dataReceived(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert seen == [({b"pretty": [b"1"]}, body)]


# Request deadline


def test_a_request_trickled_a_byte_at_a_time_gets_408_at_the_deadline():
    clock = Clock()
    site, pages = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    # A byte every 10 s: well within Twisted's 60 s idle timeout, which restarts with each one.
    for byte in b"GET":
        protocol.dataReceived(bytes([byte]))
        clock.advance(9.9)
        assert transport.value() == b""
        clock.advance(0.1)
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert json.loads(body) == {"error": "the request did not arrive whole within 30 s"}
    assert transport.disconnecting
    protocol.dataReceived(b"alhost\r\n\r\n")  # too late: not read
    assert pages.held == []


def test_a_client_that_neither_reads_nor_closes_is_cut_off_after_the_answer():
    clock = Clock()
    site, _ = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(b"GET /slow HTTP/1.1\r\n")
    clock.advance(30)
    assert transport.disconnecting and not transport.disconnected
    clock.advance(LINGER_SECONDS)
    assert transport.disconnected  # aborted


def test_the_deadline_covers_the_body_too():
    clock = Clock()
    site, _ = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(b"POST /slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n12345")
    clock.advance(29)
    protocol.dataReceived(b"678")
    clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408 ")


def test_a_request_whole_within_the_deadline_is_answered_and_never_timed_out():
    clock = Clock()
    site, _ = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(b"GET /fast HTTP/1.1\r\n")
    clock.advance(29)
    protocol.dataReceived(b"Host: localhost\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK")
    clock.advance(59)  # idle, kept alive
    assert b"408" not in transport.value() and not transport.disconnecting


def test_an_endless_response_is_not_cut_by_the_deadline():
    clock = Clock()
    site, pages = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(get("/stream"))
    clock.advance(3600)
    (stream,) = pages.held
    stream.write(b"an hour later\n")
    assert not transport.disconnecting
    assert b"408" not in transport.value()
    assert transport.value().endswith(b"an hour later\n\r\n")  # a chunk


def test_an_idle_keep_alive_connection_is_left_to_twisteds_idle_timeout():
    clock = Clock()
    site, _ = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(get("/fast"))
    answered = transport.value()
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(1)  # Twisted's own 60 s idle timeout, unchanged
    assert transport.disconnecting and transport.value() == answered


def test_options_star_leaves_no_deadline_behind():
    # Twisted answers `OPTIONS *` itself, without asking the site for a resource.
    clock = Clock()
    site, _ = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    clock.advance(59)
    assert not transport.disconnecting


def test_the_next_request_gets_its_own_deadline():
    clock = Clock()
    site, _ = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(get("/fast"))
    clock.advance(50)
    protocol.dataReceived(b"GET /fast HTTP/1.1\r\n")
    clock.advance(29)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.value().count(b"HTTP/1.1 408 ") == 1


def test_a_pipelined_partial_request_gets_its_deadline_once_the_one_before_is_answered():
    clock = Clock()
    site, pages = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(get("/slow"))
    protocol.dataReceived(b"GET /fast HTTP/1.1\r\n")  # waits while /slow is answered
    clock.advance(100)
    assert not transport.disconnecting
    (slow,) = pages.held
    slow.finish()
    clock.advance(29)
    assert b"408" not in transport.value()
    clock.advance(1)
    assert b"HTTP/1.1 408 " in transport.value()


def test_a_pipelined_whole_request_is_answered_and_then_idle():
    clock = Clock()
    site, pages = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(get("/slow"))
    protocol.dataReceived(get("/fast"))
    (slow,) = pages.held
    slow.finish()
    assert transport.value().endswith(b"fast\n")
    clock.advance(59)
    assert not transport.disconnecting


# Connection cap


def test_connections_past_the_cap_get_503_and_are_closed():
    clock = Clock()
    site, _ = site_on(clock, max_connections=2)
    first, _ = connect(site)
    connect(site)
    refused, transport = connect(site)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 1" in head and b"\r\nConnection: close" in head
    assert json.loads(body) == {"error": "too many connections: retry later"}
    assert transport.disconnecting
    assert len(site.connections) == 2
    refused.connectionLost(None)
    first.connectionLost(None)
    _, transport = connect(site)
    assert transport.value() == b"" and not transport.disconnecting
    assert len(site.connections) == 2


# The same over real sockets


class Client(Protocol):
    def __init__(self, send: bytes = b""):
        self.send = send
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.send)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.closed.callback(self.received)


async def open_client(port, send: bytes) -> Client:
    client = Client(send)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
    return client


async def closed(client: Client) -> bytes:
    return await client.closed.addTimeout(WAIT, reactor)


@pytest_twisted.async_yield_fixture
async def server():
    """A GuardedSite on an ephemeral loopback port, on the real reactor."""
    ports = []

    def listen(**limits):
        pages = Pages()
        port = reactor.listenTCP(0, GuardedSite(pages, limits=SiteLimits(**limits)), interface="127.0.0.1")
        ports.append(port)
        return port, pages

    yield listen
    for port in ports:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_slow_client_gets_408_and_is_closed_over_tcp(server):
    port, _ = server(request_deadline=0.2)
    client = await open_client(port, b"GET /fast HTTP/1.1\r\nHost: localhost\r\n")
    answer = await closed(client)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {
        "error": "the request did not arrive whole within 0.2 s"
    }


@pytest_twisted.ensureDeferred
async def test_connections_past_the_cap_get_503_over_tcp(server):
    port, pages = server(max_connections=1)
    first = await open_client(port, b"GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    await pages.arrived.addTimeout(WAIT, reactor)  # the first connection is Beater's now
    second = await open_client(port, get("/fast"))
    answer = await closed(second)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 1\r\n" in answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "too many connections: retry later"
    (slow,) = pages.held
    slow.finish()
    await closed(first)  # Connection: close: the server closed it first, and counted it out
    third = await open_client(port, b"GET /fast HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert (await closed(third)).startswith(b"HTTP/1.1 200 OK\r\n")


@pytest_twisted.ensureDeferred
async def test_an_unknown_host_gets_421_over_tcp(server):
    port, _ = server()
    client = await open_client(
        port, b"GET /fast HTTP/1.1\r\nHost: rebound.attacker.example:8070\r\nConnection: close\r\n\r\n"
    )
    answer = await closed(client)
    assert answer.startswith(b"HTTP/1.1 421 ")
    assert "rebound.attacker.example" in json.loads(answer.partition(b"\r\n\r\n")[2])["error"]


# Access log


@pytest.mark.parametrize("access_log", [False, True])
def test_a_line_per_request_only_when_the_access_log_is_on(access_log, tmp_path):
    clock = Clock()
    site, _ = site_on(clock)
    site.access_log = access_log
    site.logPath = str(tmp_path / "access.log")
    site.startFactory()
    try:
        protocol, transport = connect(site)
        protocol.dataReceived(get("/fast"))
        assert transport.value().startswith(b"HTTP/1.1 200")
    finally:
        site.stopFactory()
    lines = (tmp_path / "access.log").read_text().splitlines()
    assert len(lines) == (1 if access_log else 0)
    if access_log:
        assert '"GET /fast HTTP/1.1" 200' in lines[0]


def test_both_services_log_no_line_per_request_by_default():
    assert not BeaterSettings().access_log and not TailorSettings().access_log


# A client that goes away


def test_an_answer_to_a_client_that_went_away_is_not_written():
    clock = Clock()
    site, pages = site_on(clock, request_deadline=30)
    protocol, transport = connect(site)
    protocol.dataReceived(get("/slow"))
    (request,) = pages.held
    assert not answered_or_gone(request)
    protocol.connectionLost(ConnectionDone())
    assert answered_or_gone(request)  # learnt from notifyFinish(), not Twisted's private state
    sent = transport.value()
    send_error(request, 503, "too late")  # as Beater answers a sender after its batch
    assert transport.value() == sent
    assert not request.finished
