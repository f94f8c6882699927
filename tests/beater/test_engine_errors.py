"""Engine errors charged to whoever caused them: a document the engine cannot read is its
sender's 422; a stored query the engine can no longer run is taken out of percolation (logged,
counted, its subscribers told) and ingest goes on; an index closed under Beater is a
misconfiguration, 500 and a log line, not the sender's 422."""

from __future__ import annotations

import pytest_twisted

from estrom.clients import HttpStream, eventually, get, grew, http, post, scrape

# Both engines store it while "f" is unmapped, and refuse to run it once "f" is a number.
REGEXP = '{"regexp": {"f": "ab.*"}}'


async def _engine(stack, method: str, path: str, body=None) -> dict:
    extra = {} if body is None else {"json": body}
    response = await http.request(method, stack.engine_url + path, **extra)
    return await response.json()


async def _streams(stack, index: str, *queries: str) -> list[HttpStream]:
    streams = [await HttpStream.open(stack.tailor_url, i=index, q=query) for query in queries]
    for stream in streams:
        await stream.wait_for_head()
    return streams


@pytest_twisted.ensureDeferred
async def test_a_stored_query_the_engine_can_no_longer_run_is_taken_out_and_ingest_goes_on(stack, index):
    # A source index that does not map "f": a regular expression on it is stored.
    await _engine(stack, "PUT", f"/{index}", {"mappings": {"properties": {"g": {"type": "keyword"}}}})
    broken, kept = await _streams(stack, index, REGEXP, "g:x")
    broken_id = broken.subscription_id
    # Then "f" becomes a number, and the percolator index follows at the next registration: the
    # engine cannot run a regular expression on a number, and failed every percolation of the
    # index with it (every document of every sender was 422 before).
    await _engine(stack, "PUT", f"/{index}/_mapping", {"properties": {"f": {"type": "long"}}})
    (later,) = await _streams(stack, index, "g:y")
    before = await scrape(stack.beater_url)
    status, answer = await post(f"{stack.beater_url}/api/v0.1/docs/{index}", [{"g": "x"}, {"g": "y"}])
    assert (status, answer) == (200, {"accepted": 2, "matched": 2, "published": 2})
    assert [hit["_source"] for hit in await kept.wait_for_hits(1)] == [{"g": "x"}]
    assert [hit["_source"] for hit in await later.wait_for_hits(1)] == [{"g": "y"}]
    # Its subscribers are told, and the stream ends as valid JSON.
    ended = await broken.wait_for_end()
    assert ended["hits"] == [] and "taken out" in ended["error"], ended
    assert "regexp" in ended["error"]
    after = await scrape(stack.beater_url)
    assert grew(before, after, "estrom_failures_total", what="query_taken_out") == 1
    log = stack.log_path("beater").read_text()
    assert f"cannot run the stored query {broken_id}" in log
    # Opened again by its ID: why it ended, not a stream that never gets a hit.
    status, answer = await get(f"{stack.tailor_url}/api/v0.1/docs", {"s": broken_id})
    assert status == 400 and "taken out" in answer["error"], answer
    # Registered again: the engine refuses to store it, and says why.
    status, answer = await get(f"{stack.tailor_url}/api/v0.1/docs", {"i": index, "q": REGEXP})
    assert status == 400 and "regexp" in answer["error"], answer
    # Further documents take no more detours, and a document the engine cannot read is still
    # its sender's 422, with no query taken out for it.
    status, _ = await post(f"{stack.beater_url}/api/v0.1/docs/{index}", [{"g": "x", "n": 1}])
    assert status == 200
    status, answer = await post(f"{stack.beater_url}/api/v0.1/docs/{index}", [{"f": "not a number"}])
    assert status == 422 and "not a number" in answer["error"], answer
    assert grew(after, await scrape(stack.beater_url), "estrom_failures_total", what="query_taken_out") == 0
    assert [hit["_source"] for hit in await kept.wait_for_hits(2)][1] == {"g": "x", "n": 1}
    for stream in (kept, later):
        stream.close()


@pytest_twisted.ensureDeferred
async def test_a_closed_percolator_index_is_a_misconfiguration_answered_500_and_logged(stack, index):
    (stream,) = await _streams(stack, index, "level:error")
    await _engine(stack, "POST", f"/estrom-queries-{index}/_close")
    try:
        status, answer = await post(f"{stack.beater_url}/api/v0.1/docs/{index}", [{"level": "error"}])
        assert status == 500 and "misconfiguration" in answer["error"], answer
        assert "closed" in answer["error"]
        # The _bulk API tells the shipper the same, item by item.
        status, answer = await post(
            f"{stack.beater_url}/{index}/_bulk",
            b'{"index": {}}\n{"level": "error"}\n',
            "application/x-ndjson",
        )
        assert status == 200 and answer["items"][0]["index"]["status"] == 500, answer
        assert "refuses to percolate" in stack.log_path("beater").read_text()
    finally:
        await _engine(stack, "POST", f"/estrom-queries-{index}/_open")

    async def delivered() -> bool:
        status, _ = await post(f"{stack.beater_url}/api/v0.1/docs/{index}", [{"level": "error"}])
        return status == 200

    await eventually(delivered, what="the reopened index to percolate")
    assert (await stream.wait_for_hits(1))[0]["_source"] == {"level": "error"}
    stream.close()
