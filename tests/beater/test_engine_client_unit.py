"""beater.engine's client: every way the engine fails to answer, in time or at all, is
EngineUnavailable (503 + Retry-After at the edges), never an exception that escapes as a 500.

First with treq's StubTreq and a Clock, then against real loopback servers that misbehave.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import pytest_twisted
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.web.client import Agent
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from beater.engine import ENCODE_IN_THREAD, Engine, EngineError, EngineUnavailable, encode
from estrom.testing import FakeEngine

# A deadline long enough for a busy test machine, but the test must fail, not hang, without it.
WAIT = 10.0


class Node(Resource):
    """A fake engine: ``/ok``, ``/echo`` (the request's body), ``/status/<code>``; ``/silent`` never answers; ``/stall`` sends its
    head and part of its body, and nothing more."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.gone: list[Request] = []  # held requests whose connection was closed

    def render(self, request: Request) -> bytes | int:
        request.setHeader(b"Content-Type", b"application/json")
        name, *rest = request.postpath
        if name == b"ok":
            return b'{"took": 1}'
        if name == b"echo":
            return request.content.read()
        if name == b"status":
            request.setResponseCode(int(rest[0]))
            return json.dumps(
                {"error": {"type": "t", "reason": "because", "caused_by": {"reason": "inner"}}}
            ).encode()
        request.notifyFinish().addErrback(lambda _: self.gone.append(request))
        if name == b"stall":
            request.write(b'{"hits": [')
        return NOT_DONE_YET


def stubbed(timeout: float = 5.0) -> tuple[Engine, StubTreq, Clock, Node]:
    node, clock = Node(), Clock()
    stub = StubTreq(node)
    return Engine("http://engine.test:9200", timeout, http=stub, clock=clock), stub, clock, node


def start(engine: Engine, path: str) -> Deferred:
    return Deferred.fromCoroutine(engine.request("GET", path))


def failure_of(d: Deferred) -> Exception:
    failures = []
    d.addErrback(failures.append)
    assert failures, "the request has not failed"
    return failures[0].value


def test_a_2xx_answer_is_decoded():
    engine, stub, _, _ = stubbed()
    d = start(engine, "/ok")
    stub.flush()
    assert d.result == {"took": 1}


@pytest.mark.parametrize(
    "content, answer",
    [
        (
            b'{"n": 123456789012345678901234567890, "s": "\\u00e9"}',
            {"n": 123456789012345678901234567890, "s": "é"},
        ),
        (b'{"x": NaN}', "nan"),  # not JSON, but what the standard library reads
        (b"<html>not json</html>", {"error": "<html>not json</html>"}),
    ],
    ids=["exact", "nan", "not-json"],
)
def test_an_answer_is_read_exactly_or_kept_as_the_error(content, answer):
    engine, stub, _, _ = stubbed()
    d = Deferred.fromCoroutine(engine.request("POST", "/echo", content))
    stub.flush()
    if answer == "nan":
        assert d.result["x"] != d.result["x"]
    else:
        assert d.result == answer


@pytest.mark.parametrize("code", [500, 503, 429])
def test_a_5xx_or_429_answer_is_unavailable(code):
    engine, stub, _, _ = stubbed()
    d = start(engine, f"/status/{code}")
    stub.flush()
    error = failure_of(d)
    assert isinstance(error, EngineUnavailable) and error.status == code
    assert f"answered {code} to GET /status/{code}: inner" in str(error)


def test_a_4xx_answer_is_the_engines_refusal():
    engine, stub, _, _ = stubbed()
    d = start(engine, "/status/400")
    stub.flush()
    error = failure_of(d)
    assert isinstance(error, EngineError) and (error.status, error.reason) == (400, "inner")


@pytest.mark.parametrize(
    ("status", "body", "misconfiguration"),
    [
        # What each engine answers to a search of a closed index, a write block, a refused user.
        (400, {"error": {"type": "index_closed_exception", "reason": "closed"}}, True),
        (403, {"error": {"type": "cluster_block_exception", "reason": "blocked by: [FORBIDDEN/8]"}}, True),
        (403, {"error": {"type": "security_exception", "reason": "no permissions"}}, True),
        (401, {"error": "Unauthorized"}, True),
        (
            400,
            {
                "error": {
                    "type": "search_phase_execution_exception",
                    "caused_by": {"type": "index_closed_exception", "reason": "closed"},
                }
            },
            True,
        ),
        # A document or a stored query: a sender's, or a query's to take out.
        (400, {"error": {"type": "mapper_parsing_exception", "reason": "failed to parse field"}}, False),
        (
            400,
            {
                "error": {
                    "type": "search_phase_execution_exception",
                    "caused_by": {"type": "query_shard_exception", "reason": "Can only use regexp"},
                }
            },
            False,
        ),
    ],
)
def test_refusals_for_how_things_are_set_up_are_told_from_the_others(status, body, misconfiguration):
    assert EngineError(status, body).misconfiguration is misconfiguration


def test_no_answer_head_within_the_timeout_is_unavailable():
    engine, stub, clock, _ = stubbed(timeout=5)
    d = start(engine, "/silent")
    stub.flush()
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.1)
    error = failure_of(d)
    assert isinstance(error, EngineUnavailable)
    assert str(error) == "search engine at http://engine.test:9200 did not answer within 5 s"


def test_a_body_that_stalls_is_unavailable_and_its_connection_closed():
    engine, stub, clock, node = stubbed(timeout=5)
    d = start(engine, "/stall")
    stub.flush()  # the head and the start of the body have arrived
    clock.advance(5)
    assert isinstance(failure_of(d), EngineUnavailable)
    stub.flush()
    assert len(node.gone) == 1  # closed, not left open for as long as the engine stalls


class NeverConnects:
    """An endpoint whose connection attempt never ends: cancelling it fails it with
    ConnectingCancelledError, as Twisted's HostnameEndpoint does."""

    def endpointForURI(self, uri):
        return self

    def connect(self, factory):
        return Deferred(lambda d: d.errback(ConnectingCancelledError(None)))


def test_a_connection_that_cannot_be_made_within_the_timeout_is_unavailable():
    clock = Clock()
    agent = Agent.usingEndpointFactory(clock, NeverConnects())
    engine = Engine("http://engine.test:9200", 5, http=HTTPClient(agent), clock=clock)
    d = start(engine, "/ok")
    clock.advance(5)
    error = failure_of(d)
    assert isinstance(error, EngineUnavailable), error
    assert "did not answer within 5 s" in str(error)


# Real loopback servers


class Silent(Protocol):
    """Accepts, reads, never answers."""


class HeadThenStall(Protocol):
    """Answers the head and part of the body, then nothing; ``lost`` fires when the client closes."""

    lost: Deferred[None]

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )

    def connectionLost(self, reason) -> None:
        HeadThenStall.lost.callback(None)


@pytest_twisted.async_yield_fixture
async def listen():
    ports = []

    def on(protocol: type[Protocol]) -> str:
        port = reactor.listenTCP(0, Factory.forProtocol(protocol), interface="127.0.0.1")
        ports.append(port)
        return f"http://127.0.0.1:{port.getHost().port}"

    yield on
    for port in ports:
        await port.stopListening()


async def unavailable(engine: Engine) -> tuple[EngineUnavailable, float]:
    """The EngineUnavailable a request fails with, and how long it took."""
    started = time.monotonic()
    d = Deferred.fromCoroutine(engine.request("GET", "/x"))
    # Without a deadline of its own the request would hang: fail the test instead.
    d.addTimeout(WAIT, reactor)
    with pytest.raises(EngineUnavailable) as raised:
        await d
    return raised.value, time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_a_server_that_accepts_and_never_answers_is_unavailable_promptly(listen):
    error, took = await unavailable(Engine(listen(Silent), timeout=0.2))
    assert "did not answer within 0.2 s" in str(error)
    assert took < 2


@pytest_twisted.ensureDeferred
async def test_a_server_that_stalls_the_body_is_unavailable_promptly_and_disconnected(listen):
    HeadThenStall.lost = Deferred()
    error, took = await unavailable(Engine(listen(HeadThenStall), timeout=0.2))
    assert "did not answer within 0.2 s" in str(error)
    assert took < 2
    # The connection is closed, not left open for as long as the engine stalls.
    await HeadThenStall.lost.addTimeout(WAIT, reactor)


@pytest_twisted.ensureDeferred
async def test_a_server_that_does_not_accept_the_connection_is_unavailable_promptly():
    # A full accept queue: Linux drops further SYNs, so connecting hangs (the timeout's case).
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    filler = socket.create_connection(server.getsockname())
    try:
        error, took = await unavailable(Engine(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.2))
        assert "did not answer within 0.2 s" in str(error)
        assert took < 2
    finally:
        filler.close()
        server.close()


@pytest_twisted.ensureDeferred
async def test_a_refused_connection_is_unavailable():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    error, _ = await unavailable(Engine(f"http://127.0.0.1:{port}", timeout=5))
    assert "unreachable" in str(error)


class _Counted(Site):
    """A tiny engine: every request answers ``{}``; counts the connections made to it."""

    def __init__(self):
        resource = Resource()
        resource.putChild(b"x", _Empty())
        super().__init__(resource)
        self.connections = 0

    def buildProtocol(self, addr):
        self.connections += 1
        return super().buildProtocol(addr)


class _Empty(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        return b"{}"


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_reuse_kept_alive_connections():
    site = _Counted()
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        engine = Engine(f"http://127.0.0.1:{port.getHost().port}", timeout=5, connections=8)
        for _ in range(5):
            await gatherResults([Deferred.fromCoroutine(engine.request("GET", "/x")) for _ in range(8)])
        # Eight at a time, five times: eight connections, kept (treq's shared pool of 2 per host
        # made 32 here).
        assert site.connections == 8
    finally:
        await port.stopListening()


def _bulk(answers: list[list[int | None]]) -> FakeEngine:
    """A node whose ``_bulk`` answers each request with the next of ``answers`` (item statuses; a
    missing status: an item the answer leaves out)."""

    def answer(lines: list[dict]) -> tuple[int, dict]:
        items = [
            {
                "delete": {
                    "status": status,
                    **({"error": {"type": f"e{status}", "reason": "no"}} if status >= 300 else {}),
                }
            }
            for status in answers.pop(0)
            if status is not None
        ]
        return 200, {"took": 1, "errors": True, "items": items}

    node = FakeEngine()
    node.answer("POST", "/_bulk", answer)
    return node


@pytest_twisted.ensureDeferred
async def test_bulk_items_says_which_items_were_refused_and_sends_those_a_moment_mends_once_more():
    node = _bulk([[200, 429, 409, 503], [200, 503]])
    engine = Engine(FakeEngine.URL, http=StubTreq(node))
    items = [[{"delete": {"_index": "i", "_id": str(n)}}] for n in range(4)]
    refused = await engine.bulk_items(items)
    # 429 and 503 are sent again, alone; the 409 is not (a retry cannot mend it).
    assert [line["delete"]["_id"] for line in node.seen("POST", "/_bulk")[1].body] == ["1", "3"]
    assert [(r.position, r.status, r.type) for r in refused] == [(2, 409, "e409"), (3, 503, "e503")]


@pytest_twisted.ensureDeferred
async def test_an_item_the_bulk_answer_leaves_out_is_refused():
    engine = Engine(FakeEngine.URL, http=StubTreq(_bulk([[200, None], [None]])))
    refused = await engine.bulk_items([[{"delete": {}}], [{"delete": {}}]])
    assert [(r.position, r.status, r.type) for r in refused] == [(1, 500, "no_answer")]


@pytest.mark.parametrize("count", [3, ENCODE_IN_THREAD], ids=["at-once", "in-a-thread"])
@pytest_twisted.ensureDeferred
async def test_documents_encoded_once_stand_where_they_go_in_every_body(count):
    engine, stub, _, _ = stubbed()
    documents = [{"n": n, "text": "\x00estrom-encoded\x00 \u2603"} for n in range(count)]
    encoded = await encode(documents)
    for page in range(2):  # the same encoding in the bodies of two pages
        body = {
            "query": {"bool": {"filter": [{"percolate": {"documents": encoded}}]}},
            "search_after": [page],
        }
        sent = Deferred.fromCoroutine(engine.request("POST", "/echo", body))
        stub.flush()
        echoed = sent.result
        assert echoed == {
            "query": {"bool": {"filter": [{"percolate": {"documents": documents}}]}},
            "search_after": [page],
        }
