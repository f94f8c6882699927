"""Tailor's endless JSON response, read the way `curl -N` + ijson read it."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.parse

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from estrom import api
from estrom.clients import HttpStream, docs_url, eventually, get, http, post, subscribers, wamp_session

# Tailor does not talk to the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


@pytest_twisted.ensureDeferred
async def test_head_is_sent_at_once_and_hits_are_yielded_one_by_one(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="level:error")
    sid = await stream.wait_for_head()
    assert stream.raw.startswith(b'{"subscription_id": "%s", "hits": [' % sid.encode())
    assert stream.hits == []

    await post(docs_url(stack.beater_url, index), {"level": "error", "n": 1})
    assert [hit["_source"]["n"] for hit in await stream.wait_for_hits(1)] == [1]
    await post(docs_url(stack.beater_url, index), {"level": "error", "n": 2})
    assert [hit["_source"]["n"] for hit in await stream.wait_for_hits(2)] == [1, 2]
    assert not stream.ended
    stream.close()


@pytest_twisted.ensureDeferred
async def test_limit_closes_the_stream_as_valid_json_after_n_hits(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="level:error", limit="2")
    sid = await stream.wait_for_head()
    await post(docs_url(stack.beater_url, index), [{"level": "error", "n": n} for n in range(3)])
    body = await stream.wait_for_end()
    assert body["subscription_id"] == sid
    assert [hit["_source"]["n"] for hit in body["hits"]] == [0, 1]


@pytest_twisted.ensureDeferred
async def test_query_dsl_as_json_in_q(stack, index):
    query = {
        "query": {
            "bool": {
                "filter": [{"term": {"service": "api"}}, {"range": {"latency_ms": {"gte": 500}}}],
                "must_not": {"match": {"level": "debug"}},
            }
        }
    }
    stream = await HttpStream.open(stack.tailor_url, i=index, q=json.dumps(query), limit="1")
    await stream.wait_for_head()
    docs = [
        {"service": "api", "level": "debug", "latency_ms": 900},
        {"service": "api", "level": "warn", "latency_ms": 60},  # "60" > "500" as text, not as a number
        {"service": "api", "level": "warn", "latency_ms": 900},
    ]
    await post(docs_url(stack.beater_url, index), docs)
    body = await stream.wait_for_end()
    assert [hit["_source"] for hit in body["hits"]] == [docs[2]]


@pytest_twisted.ensureDeferred
async def test_a_subscription_id_reopens_the_same_query(stack, index):
    first = await HttpStream.open(stack.tailor_url, i=index, q="service:api AND level:error")
    sid = await first.wait_for_head()
    again = await HttpStream.open(stack.tailor_url, s=sid)
    assert await again.wait_for_head() == sid
    same = await HttpStream.open(stack.tailor_url, i=index, q="level:error AND service:api")
    assert await same.wait_for_head() == sid
    await post(docs_url(stack.beater_url, index), {"service": "api", "level": "error"})
    for stream in (first, again, same):
        assert len(await stream.wait_for_hits(1)) == 1
        stream.close()


@pytest.mark.parametrize(
    "params, status, message",
    [
        ({}, 400, "give 'i' (the index) and 'q' (the query), or 's'"),
        ({"i": "events"}, 400, "give 'i'"),
        ({"q": "foo"}, 400, "give 'i'"),
        ({"i": "events", "q": "  "}, 400, "give 'i'"),
        ({"s": "abc", "q": "foo"}, 400, "not both"),
        ({"s": "abc", "limit": "0"}, 400, "'limit' must be a positive integer"),
        ({"s": "abc", "limit": "ten"}, 400, "'limit' must be a positive integer"),
        ({"i": "events", "q": "foo", "index": "x"}, 400, "unknown parameter(s): index"),
        ({"i": "events", "q": "level:(error OR"}, 400, "cannot parse the query string"),
        ({"i": "events", "q": '{"script": {"script": "1"}}'}, 400, "query type 'script' is not allowed"),
        ({"i": "events", "q": '{"match": {"msg": {"query": "x", "bogus": 1}}}'}, 400, "bogus"),
        ({"i": "Events", "q": "foo"}, 400, "must be lowercase"),
        ({"s": "0123456789abcdef"}, 404, "no query has the ID '0123456789abcdef'"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_requests_get_a_json_error(stack, params, status, message):
    got, answer = await get(stack.tailor_url + "/api/v0.1/docs", params)
    assert got == status
    assert message in answer["error"]


@pytest_twisted.ensureDeferred
async def test_wrong_method_is_a_json_405(stack):
    response = await http.post(stack.tailor_url + "/api/v0.1/docs", data=b"")
    assert response.code == 405
    assert "error" in json.loads(await response.content())


@pytest_twisted.async_yield_fixture
async def meta(stack):
    """A session allowed to ask the router about subscriptions (Beater's principal)."""
    session = await wamp_session(stack.router_url, {"ticket": {"authid": "beater", "ticket": stack.secret}})
    yield session
    session.leave()


@pytest_twisted.ensureDeferred
async def test_a_client_that_disconnects_is_unsubscribed(stack, index, meta):
    one = await HttpStream.open(stack.tailor_url, i=index, q="level:error")
    sid = await one.wait_for_head()
    two = await HttpStream.open(stack.tailor_url, s=sid)
    await two.wait_for_head()
    assert await subscribers(meta, sid) == 1  # Tailor holds one subscription for both

    one.close()
    await post(docs_url(stack.beater_url, index), {"level": "error"})
    assert len(await two.wait_for_hits(1)) == 1  # the other client is not disturbed
    assert await subscribers(meta, sid) == 1

    two.close()

    async def unsubscribed():
        return await subscribers(meta, sid) == 0

    await eventually(unsubscribed, what="Tailor to unsubscribe")


@pytest_twisted.ensureDeferred
async def test_keepalive_and_shutdown_mid_stream_end_in_valid_json(stack, index):
    url = stack.start_tailor("tailor-shutdown", port=stack.ports.tailor + 1, ESTROM_KEEPALIVE_SECONDS="0.2")
    try:
        stream = await HttpStream.open(url, i=index, q="level:error")
        await stream.wait_for_head()
        await post(docs_url(stack.beater_url, index), {"level": "error", "n": 1})
        await stream.wait_for_hits(1)
        # A quiet stream gets whitespace, which keeps proxies from timing it out.
        await eventually(lambda: stream.raw.endswith(b"\n\n"), what="keep-alive whitespace")

        stack.processes["tailor-shutdown"].send_signal(signal.SIGTERM)
        body = await stream.wait_for_end()
        assert [hit["_source"] for hit in body["hits"]] == [{"level": "error", "n": 1}]
        assert "error" not in body
    finally:
        # Twisted ends a process stopped by a signal with that signal, as a shell expects.
        assert stack.stop("tailor-shutdown") in (0, -signal.SIGTERM)
    assert "Traceback" not in stack.tail("tailor-shutdown", lines=200)


def _open_slow_client(port: int, index: str) -> tuple[socket.socket, bytes]:
    """A client that asks for a stream and then reads nothing (its receive buffer is small)."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(20)
    client.connect(("127.0.0.1", port))
    query = urllib.parse.urlencode({"i": index, "q": "service:api"})
    client.sendall(
        f"GET /api/v0.1/docs?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    )
    head = b""
    while b'"hits": [' not in head:
        head += client.recv(4096)
    return client, head


def _read_to_end(client: socket.socket, head: bytes) -> bytes:
    data, deadline = head, time.monotonic() + 20  # keep-alive newlines would outlast a socket timeout
    while chunk := client.recv(65536):
        data += chunk
        assert time.monotonic() < deadline, "the stream did not end"
    client.close()
    body = data.split(b"\r\n\r\n", 1)[1]
    # Undo the chunked transfer encoding.
    out, rest = b"", body
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        if int(size, 16) == 0:
            break
        out, rest = out + rest[: int(size, 16)], rest[int(size, 16) + 2 :]
    return out


@pytest.mark.parametrize(
    "bound",
    [
        {"ESTROM_MAX_PENDING_HITS": "200"},
        # Few hits, but large ones: the bytes kept are bounded too (~250 hits of 8 kB, more
        # than one event of 100 hits, which a client that keeps up may have waiting at once).
        {"ESTROM_MAX_PENDING_HITS": "100000", "ESTROM_MAX_PENDING_BYTES": "2000000"},
        # Within its own bounds (16 MiB), past what all of Tailor's streams may keep together:
        # the stream furthest behind ends, not the one that keeps up.
        {"ESTROM_MAX_PENDING_HITS": "100000", "ESTROM_MAX_PENDING_TOTAL_BYTES": "2000000"},
    ],
    ids=["hits", "bytes", "total"],
)
@pytest_twisted.ensureDeferred
async def test_a_client_too_far_behind_is_closed_with_a_count_of_what_it_missed(stack, index, bound):
    port = stack.ports.tailor + 4
    stack.start_tailor("tailor-slow", port=port, ESTROM_MAX_BEHIND_SECONDS="0.5", **bound)
    try:
        slow, head = _open_slow_client(port, index)
        fast = await HttpStream.open(f"http://127.0.0.1:{port}", i=index, q="service:api")
        await fast.wait_for_head()
        # 8 MB of matching documents: far more than the socket buffers between Tailor and the
        # slow client hold, so Tailor has to keep (200 at most) or give up.
        blob = "x" * 8000
        for batch in range(10):
            status, _ = await post(
                docs_url(stack.beater_url, index),
                [{"service": "api", "n": batch * 100 + n, "blob": blob} for n in range(100)],
            )
            assert status == 200
        assert len(await fast.wait_for_hits(1000)) == 1000  # a client that keeps up gets all
        # Had it started reading before ESTROM_MAX_BEHIND_SECONDS, it could still catch up.
        await eventually(
            lambda: "fell too far behind" in stack.tail("tailor-slow"), what="the slow client dropped"
        )
        if "ESTROM_MAX_PENDING_TOTAL_BYTES" in bound:
            assert "Tailor holds ESTROM_MAX_PENDING_TOTAL_BYTES" in stack.tail("tailor-slow")
        body = json.loads(_read_to_end(slow, head))
        assert body["dropped"] > 0
        received = [hit["_source"]["n"] for hit in body["hits"]]
        assert received == list(range(len(received)))  # in order, no gap, until it fell behind
        assert len(received) + body["dropped"] <= 1000
        fast.close()
    finally:
        stack.stop("tailor-slow")


@pytest_twisted.ensureDeferred
async def test_a_client_that_keeps_up_gets_every_hit_of_a_burst(stack, index):
    # Percolations in flight publish back to back: Tailor may hold several events' hits (more
    # than ESTROM_MAX_PENDING_HITS) before the transport could write a byte. A client that reads
    # as fast as it can must not lose its stream to that.
    stream = await HttpStream.open(stack.tailor_url, i=index, q="service:api")
    await stream.wait_for_head()
    for burst in range(3):
        answers = await gatherResults(
            [
                Deferred.fromCoroutine(
                    post(
                        docs_url(stack.beater_url, index),
                        [{"service": "api", "n": (burst * 8 + r) * 500 + n} for n in range(500)],
                    )
                )
                for r in range(8)
            ]
        )
        assert [status for status, _ in answers] == [200] * 8
    hits = await stream.wait_for_hits(12_000)
    assert sorted(hit["_source"]["n"] for hit in hits) == list(range(12_000))
    assert not stream.ended
    stream.close()


@pytest_twisted.ensureDeferred
async def test_without_a_store_resume_says_gap_and_backlog_is_refused(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="service:api", limit="1")
    await post(docs_url(stack.beater_url, index), {"service": "api", "n": 0})
    cursor = (await stream.wait_for_end())["hits"][0]["_cursor"]
    stream = await HttpStream.open(stack.tailor_url, i=index, q="service:api", after=cursor)
    await stream.wait_for_head()
    assert stream.raw.startswith(
        b'{"subscription_id": "%s", "gap": true, "hits": [' % stream.subscription_id.encode()
    )
    await post(docs_url(stack.beater_url, index), {"service": "api", "n": 1})
    assert [hit["_source"]["n"] for hit in await stream.wait_for_hits(1)] == [1]
    stream.close()
    status, answer = await get(f"{stack.tailor_url}/api/v0.1/docs", {"i": index, "q": "x", "backlog": "5"})
    assert status == 400 and "ESTROM_STORE" in answer["error"]


@pytest_twisted.ensureDeferred
async def test_a_beater_that_never_answers_is_a_503_once_the_call_deadline_passes(stack, index):
    url = stack.start_tailor("tailor-deadline", port=stack.ports.tailor + 7, ESTROM_CALL_TIMEOUT_SECONDS="1")
    # In Beater's place, a session of its role that takes registrations and never answers them.
    stack.stop("beater")
    never = await wamp_session(stack.router_url, {"ticket": {"authid": "beater", "ticket": stack.secret}})
    waiting: list[Deferred] = []

    def register(*args):
        waiting.append(Deferred())
        return waiting[-1]

    try:
        await never.register(register, api.REGISTER)
        started = time.monotonic()
        status, answer = await get(f"{url}/api/v0.1/docs", {"i": index, "q": "a:1"})
        assert (status, answer) == (503, {"error": "Beater did not answer within 1 s: retry"})
        assert time.monotonic() - started < 10
        assert len(waiting) == 1  # it was asked, and never answered
    finally:
        await never.leave()  # gone before Beater joins again (it registers with another policy)
        stack.stop("tailor-deadline")
        stack.start_beater()
