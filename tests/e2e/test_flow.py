"""The flow the README promises: POST documents, watch them arrive over HTTP and over WAMP."""

from __future__ import annotations

import pytest_twisted

from estrom import api
from estrom.clients import HttpStream, Received, docs_url, post, wamp_session


@pytest_twisted.ensureDeferred
async def test_curl_stream_receives_matching_documents_as_they_arrive(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="level:error AND service:api")
    assert stream.status == 200
    sid = await stream.wait_for_head()
    assert len(sid) == 16 and int(sid, 16) >= 0

    docs = [
        {"level": "error", "service": "api", "msg": "one"},
        {"level": "info", "service": "api", "msg": "not me"},
        {"level": "error", "service": "db", "msg": "nor me"},
        {"level": "error", "service": "api", "msg": "two"},
    ]
    status, answer = await post(f"{stack.beater_url}/api/v0.1/docs/{index}", docs)
    assert status == 200
    assert answer == {"accepted": 4, "matched": 2, "published": 2}

    hits = await stream.wait_for_hits(2)
    assert [hit["_source"]["msg"] for hit in hits] == ["one", "two"]
    assert all(hit["_index"] == index for hit in hits)
    assert len({hit["_id"] for hit in hits}) == 2
    stream.close()


@pytest_twisted.ensureDeferred
async def test_wamp_client_subscribes_to_the_topic_directly(stack, index):
    session = await wamp_session(stack.router_url)
    try:
        sid = await session.call(api.REGISTER, index, "service:api")
        received = Received()
        await session.subscribe(received, api.topic(sid))
        url = docs_url(stack.beater_url, index)
        await post(url, [{"service": "api", "n": 1}, {"service": "api", "n": 2}])
        await post(url, {"service": "api", "n": 3})  # after it, in an event of its own
        await received.wait_for(3)
        # One percolation, one event, all its hits as positional arguments.
        assert [[hit["_source"]["n"] for hit in event] for event in received.events] == [[1, 2], [3]]
    finally:
        session.leave()
