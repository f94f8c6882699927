"""When a part goes away: senders are told to retry, streams end as valid JSON, and stored
queries survive restarts of every part."""

from __future__ import annotations

import os
import signal

import pytest
import pytest_twisted

from estrom.clients import HttpStream, docs_url, eventually, get, http, post


async def answers_with(url: str, status: int, body=None) -> bool:
    got, _ = await post(url, body if body is not None else {"probe": True})
    return got == status


async def assert_retry_later(response) -> None:
    assert response.code == 503
    assert response.headers.getRawHeaders("Retry-After") == ["1"]
    assert "error" in await response.json()


@pytest_twisted.ensureDeferred
async def test_router_restart(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="level:error")
    sid = await stream.wait_for_head()
    stack.stop("router")
    try:
        # The stream can no longer receive: it ends, as valid JSON, saying why.
        body = await stream.wait_for_end()
        assert body["hits"] == [] and "router" in body["error"]

        await eventually(
            lambda: answers_with(docs_url(stack.beater_url, index), 503), what="Beater to notice"
        )
        await assert_retry_later(await http.post(docs_url(stack.beater_url, index), json={"level": "error"}))
        bulk = b'{"index": {}}\n{"level": "error"}\n'
        await assert_retry_later(  # every item would be 503: the whole request is
            await http.post(
                f"{stack.beater_url}/{index}/_bulk", data=bulk, headers={"Content-Type": "application/json"}
            )
        )
        await assert_retry_later(await http.get(stack.tailor_url + "/api/v0.1/docs", params={"s": sid}))

        # Their health: up, but not ready, and saying why (a check's outcome is kept for 1 s).
        async def unready(url: str):
            status, answer = await get(f"{url}/readyz")
            return answer["checks"] if status == 503 else None

        beater = await eventually(lambda: unready(stack.beater_url), what="Beater's readiness")
        assert beater == {"engine": "ok", "router": "not joined to the router"}
        tailor = await eventually(lambda: unready(stack.tailor_url), what="Tailor's readiness")
        assert tailor == {"router": "not joined to the router"}
        for url in (stack.beater_url, stack.tailor_url):
            assert await get(f"{url}/healthz") == (200, {"status": "ok"})
    finally:
        stack.start_router()  # it waits until both are ready again (/readyz)

    # Beater and Tailor reconnect by themselves.
    await eventually(lambda: answers_with(docs_url(stack.beater_url, index), 200), what="Beater to reconnect")
    await eventually(lambda: _status_is(stack.tailor_url, {"s": "0"}, 404), what="Tailor to reconnect")
    again = await HttpStream.open(stack.tailor_url, s=sid)
    await again.wait_for_head()
    await post(docs_url(stack.beater_url, index), {"level": "error"})
    assert len(await again.wait_for_hits(1)) == 1
    again.close()


@pytest_twisted.ensureDeferred
async def test_a_router_that_stops_answering_is_dropped_and_found_again(stack, index, sole_beater):
    # RawSocket has no ping: Beater asks the router something every heartbeat, and drops the
    # connection when no answer comes within two; senders are then told to retry.
    sole_beater(ESTROM_ROUTER_HEARTBEAT_SECONDS="0.5")
    stream = await HttpStream.open(stack.tailor_url, i=index, q="level:error")
    await stream.wait_for_head()  # a subscriber: a matching document is published
    os.killpg(stack.processes["router"].pid, signal.SIGSTOP)
    try:
        await eventually(lambda: "the router did not answer" in stack.tail("beater"), what="the heartbeat")
        await assert_retry_later(await http.post(docs_url(stack.beater_url, index), json={"level": "error"}))
    finally:
        os.killpg(stack.processes["router"].pid, signal.SIGCONT)
    await eventually(
        lambda: answers_with(docs_url(stack.beater_url, index), 200, {"level": "error"}),
        what="Beater to reconnect",
    )
    assert (await stream.wait_for_hits(1))[-1]["_source"] == {"level": "error"}
    stream.close()


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
@pytest_twisted.ensureDeferred
async def test_requests_in_flight_when_the_router_stops_answering_are_answered(
    stack, index, sole_beater, transport
):
    # A document percolated and published to a router that no longer reads, and a stream
    # whose registration went to it: once the heartbeat (RawSocket) or ping (WebSocket) drops
    # the connection, both senders are told to retry.
    router = stack.router_rawsocket_url if transport == "rawsocket" else stack.router_url
    sole_beater(ESTROM_ROUTER_URL=router, ESTROM_ROUTER_HEARTBEAT_SECONDS="0.5")
    port = stack.ports.tailor + 5
    tailor = stack.start_tailor(
        "tailor-heartbeat", port=port, ESTROM_ROUTER_URL=router, ESTROM_ROUTER_HEARTBEAT_SECONDS="0.5"
    )
    try:
        stream = await HttpStream.open(tailor, i=index, q="level:error")
        await stream.wait_for_head()  # a subscriber: the document's hit is published
        os.killpg(stack.processes["router"].pid, signal.SIGSTOP)
        try:
            sent = http.post(docs_url(stack.beater_url, index), json={"level": "error"}, timeout=10)
            opened = http.get(tailor + "/api/v0.1/docs", params={"i": index, "q": "level:warn"}, timeout=10)
            await assert_retry_later(await sent)
            await assert_retry_later(await opened)
        finally:
            os.killpg(stack.processes["router"].pid, signal.SIGCONT)
        stream.close()
    finally:
        stack.stop("tailor-heartbeat")


async def _status_is(tailor_url: str, params: dict, status: int) -> bool:
    got, _ = await get(tailor_url + "/api/v0.1/docs", params)
    return got == status


@pytest_twisted.ensureDeferred
async def test_beater_restart_keeps_registered_queries(stack, index):
    first = await HttpStream.open(stack.tailor_url, i=index, q="service:api", limit="1")
    sid = await first.wait_for_head()
    first.close()
    stack.stop("beater")
    try:
        # Nobody serves estrom.register: Tailor says "retry later".
        await assert_retry_later(
            await http.get(stack.tailor_url + "/api/v0.1/docs", params={"i": index, "q": "x"})
        )
    finally:
        stack.start_beater()
    stream = await HttpStream.open(stack.tailor_url, s=sid)
    await stream.wait_for_head()
    await post(docs_url(stack.beater_url, index), {"service": "api"})
    assert len(await stream.wait_for_hits(1)) == 1
    stream.close()


@pytest_twisted.ensureDeferred
async def test_engine_outage_is_503_and_queries_survive_an_engine_restart(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="service:api", limit="1")
    sid = await stream.wait_for_head()
    stream.close()
    stack.stop("engine")
    try:
        await assert_retry_later(await http.post(docs_url(stack.beater_url, index), json={"service": "api"}))
        await assert_retry_later(
            await http.get(stack.tailor_url + "/api/v0.1/docs", params={"i": index, "q": "other"})
        )
    finally:
        stack.start_engine()
    stream = await HttpStream.open(stack.tailor_url, s=sid)
    await stream.wait_for_head()
    await post(docs_url(stack.beater_url, index), [{"service": "db"}, {"service": "api"}])
    assert [hit["_source"] for hit in await stream.wait_for_hits(1)] == [{"service": "api"}]
    stream.close()
