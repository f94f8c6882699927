"""What the engine keeps: a cap on queries per index, and unused queries removed in time.

Each test replaces the stack's Beater with one configured for it (on the same port, so every
WAMP call reaches it), and puts the usual one back afterwards.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from estrom import api
from tests.clients import HttpStream, eventually, get, http, wamp_session


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
        ESTROM_INDEX_PATTERNS=f"{index}*,estrom-readiness",  # the stack probes that one
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
