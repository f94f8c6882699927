"""The sweep's work on the real engine, with its bulk answers read: what the engine refuses is
logged and counted, never taken as done; and Beaters sweeping at once do not undo each other."""

from __future__ import annotations

import json
import socket
import time

import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults

from beater.engine import Engine
from beater.identity import identify
from beater.indexes import SEEN_FIELD, percolator_index
from beater.percolator import Percolator, TooManyQueries
from beater.store import Store
from estrom import api
from estrom.clients import HttpStream, eventually, http, post, wamp_session

DAY = 86400


class _Counted:
    """A Percolator's or Store's ``failed``: what it counted."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def __call__(self, what: str, count: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + count


def _percolator(stack) -> tuple[Percolator, _Counted]:
    percolator, counted = Percolator(Engine(stack.engine_url)), _Counted()
    percolator.failed = counted
    return percolator, counted


async def _engine(stack, method: str, path: str, body=None) -> dict:
    extra = {} if body is None else {"json": body}  # treq would send "null" (ES 7 refuses a GET body)
    response = await http.request(method, stack.engine_url + path, **extra)
    return await response.json()


async def _block_writes(stack, name: str, blocked: bool) -> None:
    await _engine(stack, "PUT", f"/{name}/_settings", {"index.blocks.write": blocked})


async def _stored(stack, index: str, query_id: str) -> bool:
    answer = await _engine(stack, "GET", f"/{percolator_index(index)}/_doc/{query_id}")
    return bool(answer.get("found"))


async def _age(stack, index: str, query_id: str, seconds: float) -> None:
    """Make a stored query look unused for ``seconds``."""
    old = int(time.time() - seconds)  # the Percolator's clock is the reactor's: time.time()
    await _engine(
        stack,
        "POST",
        f"/{percolator_index(index)}/_update/{query_id}?refresh=true",
        {"doc": {SEEN_FIELD: old}},
    )


@pytest_twisted.ensureDeferred
async def test_queries_the_engine_will_not_remove_are_counted_and_the_sweep_ends(stack, index):
    percolator, counted = _percolator(stack)
    query = identify(index, "level:error")
    await percolator.store(query)
    await _age(stack, index, query.id, 40 * DAY)
    await _block_writes(stack, percolator_index(index), True)
    try:
        # Each delete is refused (a write block): before, the sweep took them as removed, and
        # searched for them again for ever.
        assert await percolator.sweep.remove_unused(30 * DAY, (index,)) == 0
        assert counted.counts == {"bulk_item": 1}
        assert await _stored(stack, index, query.id)
    finally:
        await _block_writes(stack, percolator_index(index), False)
    assert await percolator.sweep.remove_unused(30 * DAY, (index,)) == 1
    assert not await _stored(stack, index, query.id)


@pytest_twisted.ensureDeferred
async def test_queries_that_cannot_be_recorded_as_in_use_are_counted(stack, index):
    percolator, counted = _percolator(stack)
    query = identify(index, "level:warn")
    await percolator.store(query)
    await _block_writes(stack, percolator_index(index), True)
    try:
        assert await percolator.sweep.mark_seen([query.id], (index,)) == 0
        assert counted.counts == {"bulk_item": 1}
    finally:
        await _block_writes(stack, percolator_index(index), False)
    assert await percolator.sweep.mark_seen([query.id], (index,)) == 1


@pytest_twisted.ensureDeferred
async def test_a_query_the_sweeping_beater_knows_in_use_stays_whatever_its_record_says(stack, index):
    """The sweep removes only what its Beater does not know to be in use: a subscribed query
    whose record was made old after the sweep marked it (its marking not searchable yet, or
    overwritten) stays."""
    percolator, _ = _percolator(stack)
    listened, unused = identify(index, "level:info"), identify(index, "level:debug")
    for query in (listened, unused):
        await percolator.store(query)
        await _age(stack, index, query.id, 40 * DAY)
    assert await percolator.sweep.remove_unused(30 * DAY, (index,), keep={listened.id}) == 1
    assert await _stored(stack, index, listened.id)
    assert not await _stored(stack, index, unused.id)


@pytest_twisted.ensureDeferred
async def test_a_query_looked_up_between_the_sweeps_search_and_its_delete_stays(stack, index):
    sweeper, _ = _percolator(stack)
    other, _ = _percolator(stack)  # another Beater's, serving a lookup
    query = identify(index, "service:api")
    await sweeper.store(query)
    await _age(stack, index, query.id, 40 * DAY)
    engine = sweeper.engine
    searched = engine.request

    async def request(method, path, body=None, params=None):
        answer = await searched(method, path, body, params)
        if path.endswith("/_search") and "range" in (body or {}).get("query", {}):
            # The sweep has its list of unused queries: now a stream opens on one of them.
            assert await other.find(query.id) == {"index": index, "query": "service:api"}
        return answer

    engine.request = request
    assert await sweeper.sweep.remove_unused(30 * DAY, (index,)) == 0
    assert await _stored(stack, index, query.id)


@pytest_twisted.ensureDeferred
async def test_queries_not_stored_again_after_a_mapping_grew_are_counted_and_stored_at_the_next_sweep(
    stack, index
):
    await _engine(stack, "PUT", f"/{index}", {"mappings": {"properties": {"level": {"type": "keyword"}}}})
    percolator, counted = _percolator(stack)
    query = identify(index, "level:error")
    await percolator.store(query)
    # The source index gains a field; the percolator index cannot take its queries again.
    await _engine(stack, "PUT", f"/{index}/_mapping", {"properties": {"service": {"type": "keyword"}}})
    name = percolator_index(index)
    before = await _engine(stack, "GET", f"/{name}/_doc/{query.id}")
    await _block_writes(stack, name, True)
    try:
        assert await percolator.mappings.follow_sources((index,)) == 1
        assert counted.counts == {"bulk_item": 1}
    finally:
        await _block_writes(stack, name, False)
    # The next sweep stores them again, though the mapping has not grown since.
    assert await percolator.mappings.follow_sources((index,)) == 1
    after = await _engine(stack, "GET", f"/{name}/_doc/{query.id}")
    assert after["_seq_no"] > before["_seq_no"]
    assert counted.counts == {"bulk_item": 1}
    assert await percolator.mappings.follow_sources((index,)) == 0


CURSORS = ["0" * 20, "0" * 19 + "1"]


@pytest_twisted.ensureDeferred
async def test_copies_of_a_failed_batch_the_engine_will_not_remove_are_counted(stack, index):
    store, counted = Store(Engine(stack.engine_url)), _Counted()
    store.failed = counted
    written = await store.put(index, [{"a": 1}, {"a": 2}], ["x1", "x2"], CURSORS)
    await _block_writes(stack, index, True)
    try:
        await store.remove(index, written, CURSORS)  # logged: the copies stay
        assert counted.counts == {"bulk_item": 2}
    finally:
        await _block_writes(stack, index, False)
    await store.remove(index, written, CURSORS)
    assert counted.counts == {"bulk_item": 2}
    answer = await _engine(stack, "GET", f"/{index}/_doc/x1")
    assert not answer.get("found")


@pytest_twisted.ensureDeferred
async def test_copies_the_engine_cannot_remove_now_are_removed_once_it_is_back_and_left_out_meanwhile(
    stack, index
):
    store, counted = Store(Engine(stack.engine_url)), _Counted()
    store.failed = counted
    written = await store.put(index, [{"a": 1}, {"a": 2}], ["x1", "x2"], CURSORS)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    store.engine.url = f"http://127.0.0.1:{port}"  # the engine is away
    await store.remove(index, written, CURSORS)
    assert store.removing_cursor(index, CURSORS[1]) and not store.removing_cursor(index, "0" * 19 + "2")
    store.engine.url = stack.engine_url  # back
    await eventually(lambda: not store.removing, what="the copies removed")
    assert not (await _engine(stack, "GET", f"/{index}/_doc/x1")).get("found")
    assert not (await _engine(stack, "GET", f"/{index}/_doc/x2")).get("found")
    assert counted.counts == {}


@pytest_twisted.ensureDeferred
async def test_copies_of_a_batch_whose_storing_got_no_answer_are_found_by_their_cursors(stack, index):
    store = Store(Engine(stack.engine_url))
    await store.put(index, [{"a": 1}, {"a": 2}], ["x1", "x2"], CURSORS)
    await store.put(index, [{"a": 3}], ["x3"], ["0" * 19 + "2"])  # another batch's: stays
    await store.remove(index, None, CURSORS)
    assert not (await _engine(stack, "GET", f"/{index}/_doc/x1")).get("found")
    assert not (await _engine(stack, "GET", f"/{index}/_doc/x2")).get("found")
    assert (await _engine(stack, "GET", f"/{index}/_doc/x3"))["found"]


@pytest_twisted.ensureDeferred
async def test_one_beater_at_a_time_holds_the_sweeps_lease(stack, index):
    name = f"lease-{index}"
    holders = [_percolator(stack)[0].sweep for _ in range(10)]
    # Asked at once: one gets it.
    taken = await gatherResults(
        [ensureDeferred(p.take_lease(name, f"beater-{n}", 60)) for n, p in enumerate(holders)]
    )
    assert sum(taken) == 1
    first = taken.index(True)
    again = await holders[first].take_lease(name, f"beater-{first}", 60)  # kept by its holder
    other = (first + 1) % len(holders)
    assert again and not await holders[other].take_lease(name, f"beater-{other}", 60)
    await holders[first].give_lease_back(name, f"beater-{first}")
    assert await holders[other].take_lease(name, f"beater-{other}", 0)  # given back: taken at once
    # Expired (held for 0 s): taken over.
    assert await holders[first].take_lease(name, f"beater-{first}", 60)
    # The leases are kept out of sight of a search of every index.
    response = await http.get(f"{stack.engine_url}/_cat/indices", params={"format": "json"})
    assert not any(row["index"].startswith(".estrom") for row in await response.json())


@pytest_twisted.ensureDeferred
async def test_three_beaters_sweep_while_old_queries_are_looked_up_and_none_listened_to_is_removed(
    stack, index
):
    # Three Beaters sweep every 0.3 s (queries unused for RETENTION seconds go); one at a time
    # holds the lease. Queries made old by hand are then opened by their IDs while the sweeps
    # run: a query that a stream opened on stays stored while the stream is open, also once the
    # record its lookup made is older than RETENTION, and gets its documents.
    settings = {
        "ESTROM_QUERY_SWEEP_SECONDS": "0.3",
        "ESTROM_QUERY_RETENTION_DAYS": str(RETENTION / DAY),
        "ESTROM_INDEX_PATTERNS": f"{index}*",
    }
    names = [f"beater-sweep-{n}" for n in range(3)]
    urls = [
        stack.start_beater(name, port=stack.ports.beater + 30 + n, **settings) for n, name in enumerate(names)
    ]
    client = await wamp_session(stack.router_url)
    streams = []
    try:
        ids = [await client.call(api.REGISTER, index, f"n:{n}") for n in range(40)]
        # One stream is open before its query is made old, so at least one certainly wins the race.
        first = await HttpStream.open(stack.tailor_url, s=ids[0])
        streams.append(first)
        await first.wait_for_head()
        # All made old at once (one bulk request), then opened at once: the sweeps race the lookups.
        old = int(time.time() - 40 * DAY)
        lines = [
            line for query_id in ids for line in ({"update": {"_id": query_id}}, {"doc": {SEEN_FIELD: old}})
        ]
        aged = await http.post(
            f"{stack.engine_url}/{percolator_index(index)}/_bulk?refresh=true",
            data="".join(json.dumps(line) + "\n" for line in lines).encode(),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert not (await aged.json())["errors"]
        opening = [ensureDeferred(HttpStream.open(stack.tailor_url, s=query_id)) for query_id in ids[1:20]]
        streams += await gatherResults(opening)
        looked_up = time.time()
        # A query removed before its lookup arrived is gone (404): only open streams count.
        open_ = [(n, stream) for n, stream in enumerate(streams) if stream.status == 200]
        assert open_, [stream.status for stream in streams]
        for _, stream in open_:
            await stream.wait_for_head()

        async def not_listened_removed() -> bool:
            return not any([await _stored(stack, index, query_id) for query_id in ids[20:]])

        await eventually(not_listened_removed, what="the queries nobody opened to be removed")
        # Past what the lookups recorded, only the streams' subscriptions keep their queries.
        await eventually(lambda: time.time() > looked_up + RETENTION + 1, timeout=RETENTION + 30)
        await _until_swept_twice(stack, names)
        for n, _stream in open_:
            assert await _stored(stack, index, ids[n]), f"n:{n} was removed while a stream was open on it"
        status, _ = await post(f"{urls[0]}/api/v0.1/docs/{index}", [{"n": n} for n, _ in open_])
        assert status == 200
        for n, stream in open_:
            assert (await stream.wait_for_hits(1))[0]["_source"] == {"n": n}
    finally:
        for stream in streams:
            stream.close()
        client.leave()
        for name in names:
            stack.stop(name)


# Long enough for 40 registrations on a loaded machine, before they are made old by hand.
RETENTION = 6.0


async def _until_swept_twice(stack, names: list[str]) -> None:
    """Wait until the Beater holding the sweep's lease has swept twice more."""
    counts = {name: stack.log_path(name).read_text().count("unused ones removed") for name in names}

    def swept() -> bool:
        return any(
            stack.log_path(name).read_text().count("unused ones removed") >= counts[name] + 2
            for name in names
        )

    await eventually(swept, what="two more sweeps")


@pytest_twisted.ensureDeferred
async def test_registrations_at_once_do_not_overshoot_the_cap_on_queries(stack, index):
    percolator = Percolator(Engine(stack.engine_url, connections=20), max_queries=5)
    outcomes = await gatherResults(
        [
            ensureDeferred(percolator.store(identify(index, f"n:{n}"))).addErrback(lambda f: f.value)
            for n in range(20)
        ]
    )
    refused = [outcome for outcome in outcomes if isinstance(outcome, TooManyQueries)]
    assert len(refused) == 15, outcomes
    count = await _engine(stack, "GET", f"/{percolator_index(index)}/_count")
    assert count["count"] == 5
