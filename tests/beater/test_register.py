"""The WAMP API that Beater registers, called by a real autobahn client through the router."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import DeferredSemaphore, gatherResults

from beater.indexes import percolator_index
from estrom import api
from estrom.clients import ACKNOWLEDGE, docs_url, get, http, post, wamp_session


@pytest_twisted.async_yield_fixture
async def session(stack):
    session = await wamp_session(stack.router_url)
    yield session
    session.leave()


async def refused(call) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await call
    return raised.value


@pytest_twisted.ensureDeferred
async def test_register_returns_the_same_id_for_the_same_meaning(session, index):
    first = await session.call(api.REGISTER, index, "foo AND bar")
    assert first == await session.call(api.REGISTER, index, "( bar  AND foo )")
    assert first != await session.call(api.REGISTER, index, "foo OR bar")
    assert first != await session.call(api.REGISTER, index + "-other", "foo AND bar")


@pytest_twisted.ensureDeferred
async def test_lookup_returns_index_and_canonical_query(session, index):
    # A query string is kept as its first user wrote it; another spelling with the same ID
    # means the same to the engine.
    sid = await session.call(api.REGISTER, index, "service:api AND level:error")
    assert await session.call(api.REGISTER, index, "+level:error +service:api") == sid
    assert await session.call(api.LOOKUP, sid) == {"index": index, "query": "service:api AND level:error"}
    dsl = await session.call(api.REGISTER, index, {"query": {"term": {"level": "error"}}})
    assert await session.call(api.LOOKUP, dsl) == {
        "index": index,
        "query": {"term": {"level": {"value": "error"}}},
    }


@pytest_twisted.ensureDeferred
async def test_lookup_of_an_unknown_id_is_unknown_subscription(session):
    error = await refused(session.call(api.LOOKUP, "0123456789abcdef"))
    assert error.error == api.UNKNOWN_SUBSCRIPTION


@pytest_twisted.ensureDeferred
async def test_invalid_query_carries_the_engines_reason(session, index):
    error = await refused(session.call(api.REGISTER, index, {"match": {"msg": {"query": "x", "bogus": 1}}}))
    assert error.error == api.INVALID_QUERY
    assert "bogus" in error.args[0]


@pytest_twisted.ensureDeferred
async def test_unparsable_query_string_is_invalid_query(session, index):
    error = await refused(session.call(api.REGISTER, index, "level:(error OR"))
    assert error.error == api.INVALID_QUERY


@pytest.mark.parametrize(
    "query",
    [
        {"script": {"script": {"source": "true"}}},
        {"terms": {"user": {"index": "users", "id": "1", "path": "name"}}},
        {"percolate": {"field": "estrom_query", "document": {}}},
        {"more_like_this": {"like": [{"_index": "events", "_id": "1"}]}},
        {"bool": {"filter": {"wrapper": {"query": "eyJtYXRjaF9hbGwiOnt9fQ=="}}}},
    ],
)
@pytest_twisted.ensureDeferred
async def test_queries_that_read_other_data_or_run_code_are_refused(session, index, query):
    error = await refused(session.call(api.REGISTER, index, query))
    assert error.error == api.INVALID_QUERY
    assert "not allowed" in error.args[0]


@pytest.mark.parametrize("bad", ["Events", "_events", "a/b", "a b", "", 7])
@pytest_twisted.ensureDeferred
async def test_invalid_index_name_is_refused(session, bad):
    error = await refused(session.call(api.REGISTER, bad, "foo"))
    assert error.error == api.INVALID_INDEX


@pytest_twisted.ensureDeferred
async def test_anonymous_clients_may_not_publish_or_register(session):
    error = await refused(
        session.publish(api.topic("0123456789abcdef"), {"forged": True}, options=ACKNOWLEDGE)
    )
    assert error.error == "wamp.error.not_authorized"
    error = await refused(session.register(lambda: None, "estrom.evil"))
    assert error.error == "wamp.error.not_authorized"


@pytest_twisted.ensureDeferred
async def test_concurrent_registrations_on_a_new_index_through_several_beaters_all_succeed(
    stack, session, index
):
    # The first registration creates the percolator index; the others, shared out among two
    # Beaters, arrive while its shard is starting (the engine answered them 503 "RECOVERING").
    stack.start_beater("beater-second", port=stack.ports.beater + 7)
    try:
        limit = DeferredSemaphore(8)
        ids = await gatherResults(
            [limit.run(session.call, api.REGISTER, index, f"user:u{n}") for n in range(100)]
        )
        assert len(set(ids)) == 100
    finally:
        stack.stop("beater-second")


@pytest_twisted.ensureDeferred
async def test_a_registration_returns_once_its_query_matches_while_another_beater_stores_it(
    stack, session, index
):
    """Another Beater storing the same query has written it, and not yet made it searchable (its
    refresh is still to come): a registration through this Beater returns only once the query
    matches, so its subscriber misses no document posted after it subscribed."""
    sid = await session.call(api.REGISTER, index, "level:error")
    stored = f"{stack.engine_url}/{percolator_index(index)}"
    status, written = await get(f"{stored}/_doc/{sid}")
    assert status == 200
    # Written again as that other Beater writes it, where a search does not see it yet.
    for method, url, body in (
        ("DELETE", f"{stored}/_doc/{sid}?refresh=true", None),
        ("PUT", f"{stored}/_settings", {"index": {"refresh_interval": "-1"}}),
        ("PUT", f"{stored}/_doc/{sid}", written["_source"]),
    ):
        data = None if body is None else json.dumps(body).encode()
        response = await http.request(method, url, data=data, headers={"Content-Type": "application/json"})
        assert response.code in (200, 201), await response.text()
    assert await session.call(api.REGISTER, index, "level:error") == sid
    await session.subscribe(lambda *hits: None, api.topic(sid))
    status, answer = await post(docs_url(stack.beater_url, index), {"level": "error"})
    assert (status, answer) == (200, {"accepted": 1, "matched": 1, "published": 1})
