"""What the engine keeps: a cap on queries per index, and unused queries removed in time.

Each test replaces the stack's Beater with one configured for it (on the same port, so every
WAMP call reaches it), and puts the usual one back afterwards.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from estrom import api
from estrom.clients import HttpStream, eventually, get, http, post, wamp_session


@pytest_twisted.ensureDeferred
async def test_an_index_holds_a_bounded_number_of_queries(stack, sole_beater, index):
    sole_beater(ESTROM_MAX_QUERIES_PER_INDEX="2")
    session = await wamp_session(stack.router_url)
    try:
        first = await session.call(api.REGISTER, index, "a")
        await session.call(api.REGISTER, index, "b")
        with pytest.raises(ApplicationError) as raised:
            await session.call(api.REGISTER, index, "c")
        assert raised.value.error == api.TOO_MANY_QUERIES
        assert "2 stored queries" in raised.value.args[0]
        assert await session.call(api.REGISTER, index, "a") == first  # stored ones still open
        status, answer = await get(stack.tailor_url + "/api/v0.1/docs", {"i": index, "q": "d"})
        assert status == 429 and "stored queries" in answer["error"]
    finally:
        session.leave()


@pytest_twisted.ensureDeferred
async def test_queries_nobody_uses_are_removed_and_those_in_use_stay(stack, sole_beater, index):
    # Sweeps every 0.3 s; a query unused for 2 s goes. Only this test's indexes are swept.
    sole_beater(
        ESTROM_QUERY_SWEEP_SECONDS="0.3",
        ESTROM_QUERY_RETENTION_DAYS=str(2 / 86400),
        ESTROM_INDEX_PATTERNS=f"{index}*",
    )
    session = await wamp_session(stack.router_url)
    try:
        unused = await session.call(api.REGISTER, index, "nobody:listens")
        listened = await HttpStream.open(stack.tailor_url, i=index, q="someone:listens")
        used = await listened.wait_for_head()

        async def removed() -> bool:
            # Asked of the engine: a lookup would count as a use.
            response = await http.get(f"{stack.engine_url}/estrom-queries-{index}/_doc/{unused}")
            await response.content()
            return response.code == 404

        await eventually(removed, what="the unused query to be removed")
        # The listened-to query was stored at the same time, and is still there.
        assert await session.call(api.LOOKUP, used) == {"index": index, "query": "someone:listens"}
        listened.close()
    finally:
        session.leave()


@pytest_twisted.ensureDeferred
async def test_the_sweep_keeps_stored_queries_in_step_with_a_growing_source_mapping(
    stack, sole_beater, index
):
    created = await http.put(
        f"{stack.engine_url}/{index}", json={"mappings": {"properties": {"level": {"type": "keyword"}}}}
    )
    assert created.code == 200
    sole_beater(ESTROM_QUERY_SWEEP_SECONDS="0.3", ESTROM_INDEX_PATTERNS=f"{index}*")
    # Registered while the source has no `ts`: no new registration comes after it grows.
    stream = await HttpStream.open(stack.tailor_url, i=index, q="ts:>2026-11-15")
    await stream.wait_for_head()
    grown = await http.put(
        f"{stack.engine_url}/{index}/_mapping", json={"properties": {"ts": {"type": "date"}}}
    )
    assert grown.code == 200

    async def followed() -> bool:
        # The field is mapped, and the query stored again since (a later version of it is not
        # enough: the sweep's record that it is listened to makes one too).
        response = await http.get(f"{stack.engine_url}/estrom-queries-{index}/_mapping/field/ts")
        mapped = "date" in str(await response.json())
        said = f"the mapping of index {index} grew: 1 queries stored again"
        return mapped and said in stack.log_path("beater").read_text()

    await eventually(followed, what="the percolator index to map `ts` as the source does")
    # As a date, "> 2026-11-15" starts after that day (as a string, 10:00 on it would be after).
    status, answer = await post(
        f"{stack.beater_url}/api/v0.1/docs/{index}",
        [{"ts": "2026-11-15T10:00:00Z", "n": 1}, {"ts": "2026-11-20T00:00:00Z", "n": 2}],
    )
    assert (status, answer["matched"]) == (200, 1)
    assert [hit["_source"]["n"] for hit in await stream.wait_for_hits(1)] == [2]
    stream.close()


@pytest.mark.parametrize("store", ["false", "true"], ids=["live", "stored"])
@pytest_twisted.ensureDeferred
async def test_a_query_on_one_index_too_many_is_refused_before_its_index_is_made(
    stack, sole_beater, index, store
):
    # Each stream on a new index name would make an engine index: they are bounded.
    response = await http.get(f"{stack.engine_url}/_cat/indices/estrom-queries-*", params={"format": "json"})
    existing = len(await response.json())
    sole_beater(ESTROM_MAX_PERCOLATOR_INDEXES=str(existing + 2), ESTROM_STORE=store)
    session = await wamp_session(stack.router_url)
    try:
        for n in range(2):
            await session.call(api.REGISTER, f"{index}-{n}", "a")
        with pytest.raises(ApplicationError) as raised:
            await session.call(api.REGISTER, f"{index}-2", "a")
        assert raised.value.error == api.TOO_MANY_INDEXES
        assert f"{existing + 2} percolator indexes" in raised.value.args[0]
        status, answer = await get(stack.tailor_url + "/api/v0.1/docs", {"i": f"{index}-3", "q": "a"})
        assert status == 429 and "ESTROM_MAX_PERCOLATOR_INDEXES" in answer["error"]
        for refused in (2, 3):  # neither its percolator index nor (with the store) the index itself
            for name in (f"estrom-queries-{index}-{refused}", f"{index}-{refused}"):
                assert (await http.head(f"{stack.engine_url}/{name}")).code == 404
        assert isinstance(await session.call(api.REGISTER, f"{index}-0", "b"), str)  # known indexes take more
    finally:
        session.leave()
