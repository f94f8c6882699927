"""Hostile input against the real stack: queries, documents and index names built by hand.

Each is refused with a 4xx or an `estrom.error.` URI naming the problem (never "unavailable,
retry", never a crash), and a canary stream opened before them keeps receiving throughout.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from autobahn.twisted.component import Component
from autobahn.wamp.exception import ApplicationError
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults

from estrom import api
from estrom.clients import HttpStream, get, http, post, wamp_session

CANARY_INDEX = "t-canary"


@pytest_twisted.async_yield_fixture(scope="module")
async def canary(stack):
    """A stream that must keep receiving whatever the hostile tests send: call it to check."""
    stream = await HttpStream.open(stack.tailor_url, i=CANARY_INDEX, q="canary:yes")
    await stream.wait_for_head()
    sent = []

    async def alive() -> None:
        sent.append(len(sent))
        status, _ = await post(
            f"{stack.beater_url}/api/v0.1/docs/{CANARY_INDEX}", {"canary": "yes", "n": sent[-1]}
        )
        assert status == 200
        hits = await stream.wait_for_hits(len(sent))
        assert [hit["_source"]["n"] for hit in hits] == sent

    await alive()
    yield alive
    await alive()
    stream.close()


@pytest_twisted.async_yield_fixture
async def session(stack):
    session = await wamp_session(stack.router_url)
    yield session
    session.leave()


def deep(levels: int) -> dict:
    query: dict = {"match_all": {}}
    for _ in range(levels):
        query = {"bool": {"must": query}}
    return query


HOSTILE_QUERIES = {
    "mustNot-hides-wrapper": {"bool": {"mustNot": {"wrapper": {"query": "eyJtYXRjaF9hbGwiOnt9fQ=="}}}},
    "mustNot-hides-terms-lookup": {
        "bool": {"mustNot": {"terms": {"f": {"index": "t-canary", "id": "1", "path": "canary"}}}}
    },
    "terms-lookup-on-boost": {"terms": {"boost": {"index": "t-canary", "id": "1", "path": "canary"}}},
    "terms-lookup-on-underscore": {"terms": {"_x": {"index": "t-canary", "id": "1", "path": "canary"}}},
    "inner-hits": {
        "nested": {
            "path": "a",
            "query": {"match_all": {}},
            "inner_hits": {"script_fields": {"x": {"script": "1"}}},
        }
    },
    "regexp-states": {"regexp": {"msg": {"value": "(.*a){20}", "max_determinized_states": 100_000_000}}},
    "query-string-states": {
        "query_string": {"query": "msg:/(.*a){20}/", "max_determinized_states": 100_000_000}
    },
    "range-on-a-number": {"range": {"f": 5}},
    "deep-json": deep(150),  # 300 levels: what a client and the router still encode
    "long-lucene": "a " * 150_000,
    "deep-groups": "(" * 2000 + "a" + ")" * 2000,
}


@pytest.mark.parametrize("query", HOSTILE_QUERIES.values(), ids=HOSTILE_QUERIES.keys())
@pytest_twisted.ensureDeferred
async def test_hostile_queries_are_invalid_query_over_wamp(stack, canary, session, index, query):
    with pytest.raises(ApplicationError) as raised:
        await session.call(api.REGISTER, index, query)
    assert raised.value.error == api.INVALID_QUERY, raised.value
    await canary()


@pytest.mark.parametrize(
    "q, message",
    [
        ('{"range": {"f": 5}}', "query.range.f: must be an object"),
        ('{"q": ' + "[" * 2000 + "]" * 2000 + "}", "nested too deeply"),
        ('{"bool": {"mustNot": {"match_all": {}}}}', "unknown key 'mustNot'"),
    ],
    ids=["well-typed-nonsense", "deep-json", "other-spelling"],
)
@pytest_twisted.ensureDeferred
async def test_hostile_queries_are_400_over_http(stack, canary, index, q, message):
    status, answer = await get(stack.tailor_url + "/api/v0.1/docs", {"i": index, "q": q})
    assert status == 400, answer
    assert message in answer["error"]
    await canary()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"estrom_query": {"match_all": {}}}, "field 'estrom_query' is reserved"),
        (b'{"service": "api", "msg": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"a": ' * 1000 + b"1" + b"}" * 1000, "nested"),
    ],
    ids=["reserved-field", "lone-surrogate", "deep-json"],
)
@pytest_twisted.ensureDeferred
async def test_a_poison_document_fails_only_its_own_request(stack, canary, index, body, message):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="service:api")
    await stream.wait_for_head()
    url = f"{stack.beater_url}/api/v0.1/docs/{index}"
    requests = [
        post(url, [{"service": "api", "n": 1}]),
        post(url, body),
        post(url, {"service": "api", "n": 2}),
    ]
    (_, good), (_, poison), (_, other) = await DeferredList([Deferred.fromCoroutine(r) for r in requests])
    assert poison[0] == 422 and message in poison[1]["error"], poison
    assert good == other == (200, {"accepted": 1, "matched": 1, "published": 1})
    await stream.wait_for_hits(2)
    await canary()  # later than both: had anything been published twice, it would be here
    assert sorted(hit["_source"]["n"] for hit in stream.hits) == [1, 2]
    stream.close()


@pytest.mark.parametrize("bad", ["\x01events", ".hidden", "a\u200bb"])
@pytest_twisted.ensureDeferred
async def test_index_names_with_control_characters_or_a_leading_dot_are_refused(stack, session, bad):
    with pytest.raises(ApplicationError) as raised:
        await session.call(api.REGISTER, bad, "x")
    assert raised.value.error == api.INVALID_INDEX


@pytest_twisted.ensureDeferred
async def test_the_ingest_path_is_percent_decoded_like_tailors_i(stack, canary, index):
    stream = await HttpStream.open(stack.tailor_url, i=index + "-x", q="service:api")
    await stream.wait_for_head()
    encoded = index.replace("-", "%2D") + "%2dx"
    status, answer = await post(f"{stack.beater_url}/api/v0.1/docs/{encoded}", {"service": "api"})
    assert (status, answer["published"]) == (200, 1), answer
    await stream.wait_for_hits(1)
    status, answer = await post(f"{stack.beater_url}/api/v0.1/docs/%2Ehidden", {"service": "api"})
    assert status == 400 and "must not start with" in answer["error"]
    status, answer = await post(f"{stack.beater_url}/api/v0.1/docs/a%01b", {"service": "api"})
    assert status == 400 and "control" in answer["error"]
    stream.close()


async def engine(stack, method: str, path: str, body=None) -> dict:
    response = await http.request(
        method,
        stack.engine_url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_a_query_stored_already_is_not_stored_again(stack, session, index):
    sid = await session.call(api.REGISTER, index, "level:error AND service:api")
    stored = await engine(stack, "GET", f"/estrom-queries-{index}/_doc/{sid}")
    for spelling in ["service:api AND level:error", "(level:error AND service:api)"]:
        assert await session.call(api.REGISTER, index, spelling) == sid
    again = await engine(stack, "GET", f"/estrom-queries-{index}/_doc/{sid}")
    assert again["_version"] == stored["_version"] == 1


@pytest_twisted.ensureDeferred
async def test_a_percolator_index_on_a_single_node_has_no_unassigned_replica(stack, session, index):
    await session.call(api.REGISTER, index, "x")
    health = await engine(stack, "GET", f"/_cluster/health/estrom-queries-{index}")
    assert health["status"] == "green", health


@pytest_twisted.ensureDeferred
async def test_more_listened_queries_than_the_engine_allows_terms_do_not_stop_ingest(stack, canary, index):
    streams = []
    for level in ("error", "warn", "info"):
        stream = await HttpStream.open(stack.tailor_url, i=index, q=f"level:{level}")
        await stream.wait_for_head()
        streams.append(stream)
    # The listened-to filter is a terms query: past the index's max_terms_count the engine
    # refuses it (65,536 subscriptions by default; 2 here).
    await engine(stack, "PUT", f"/estrom-queries-{index}/_settings", {"index.max_terms_count": 2})
    status, answer = await post(
        f"{stack.beater_url}/api/v0.1/docs/{index}",
        [{"level": "error"}, {"level": "warn"}, {"level": "debug"}],
    )
    assert (status, answer) == (200, {"accepted": 3, "matched": 2, "published": 2}), answer
    for stream, level in zip(streams[:2], ("error", "warn"), strict=True):
        assert [hit["_source"]["level"] for hit in await stream.wait_for_hits(1)] == [level]
    assert streams[2].hits == []
    for stream in streams:
        stream.close()
    await canary()


@pytest_twisted.ensureDeferred
async def test_a_burst_past_the_bounds_is_answered_at_once_and_wedges_nothing(
    stack, sole_beater, canary, index
):
    # A reconnect storm against a Beater that lets 1 engine call run and 5 wait: most of 300
    # streams over 150 queries are told to retry (503) at once; none hangs. Afterwards a new
    # stream opens and receives.
    sole_beater(ESTROM_ENGINE_CALLS_IN_FLIGHT="1", ESTROM_ENGINE_CALLS_QUEUED="5")
    opens = [
        Deferred.fromCoroutine(HttpStream.open(stack.tailor_url, i=index, q=f"storm:{n % 150}"))
        for n in range(300)
    ]
    streams = [stream for ok, stream in await DeferredList(opens) if ok]
    assert len(streams) == 300
    await gatherResults([s.wait_for(lambda s=s: s.status == 503 or s.headed, "an answer") for s in streams])
    refused = [s for s in streams if s.status == 503]
    assert 0 < len(refused) < 300
    await gatherResults([s.wait_for(lambda s=s: s.ended, "the 503 answer to end") for s in refused])
    assert all(b"retry" in s.raw for s in refused)
    for stream in streams:
        stream.close()
    fresh = await HttpStream.open(stack.tailor_url, i=index, q="storm:after")
    await fresh.wait_for_head()
    status, _ = await post(f"{stack.beater_url}/api/v0.1/docs/{index}", {"storm": "after"})
    assert status == 200
    await fresh.wait_for_hits(1)
    fresh.close()
    await canary()


@pytest_twisted.ensureDeferred
async def test_a_call_nested_as_deep_as_the_router_relays_does_not_disconnect_beater(stack, canary, index):
    # msgpack: the router decodes 1,024 levels of it, and relays them to Beater (in CBOR, whose
    # decoder refused past 400 levels and dropped Beater's connection with it).
    component = Component(
        transports=[
            {"type": "websocket", "url": stack.router_url, "serializers": ["msgpack"], "max_retries": 0}
        ],
        realm="estrom",
    )
    joined: Deferred = Deferred()
    component.on("join", lambda session, details: joined.callback(session))
    component.start(reactor)
    session = await joined
    departures = stack.tail("beater", lines=1_000_000).count("Beater left the router")
    nested: list = []
    for _ in range(1000):
        nested = [nested]
    try:
        with pytest.raises(ApplicationError) as raised:
            await session.call(api.REGISTER, index, nested)
        assert raised.value.error == api.INVALID_QUERY
    finally:
        session.leave()
    await canary()
    assert stack.tail("beater", lines=1_000_000).count("Beater left the router") == departures


@pytest_twisted.ensureDeferred
async def test_more_documents_than_a_request_may_carry_is_413(stack, canary, index):
    status, answer = await post(f"{stack.beater_url}/api/v0.1/docs/{index}", [{}] * 10_001)
    assert status == 413 and "more than 10000 documents" in answer["error"]
    await canary()
