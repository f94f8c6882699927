"""The store (ESTROM_STORE): documents kept in the engine, a stream's backlog, and resume.

Beater runs with the store for this module (the ``stored`` fixture), and without it again after."""

from __future__ import annotations

import datetime
import json
import signal

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import Deferred, gatherResults

from estrom import api
from estrom.clients import HttpStream, docs_url, eventually, get, post, wamp_session
from tests.cli.test_tail import run


async def send(stack, index, numbers, **fields):
    status, answer = await post(
        docs_url(stack.beater_url, index), [{"service": "api", "n": n, **fields} for n in numbers]
    )
    assert status == 200, answer


def numbers(hits):
    return [hit["_source"]["n"] for hit in hits]


async def first(stack, index, count, **params):
    """The numbers of the first ``count`` hits of a stream opened with ``params``."""
    stream = await HttpStream.open(stack.tailor_url, i=index, q="service:api", **params)
    try:
        return numbers(await stream.wait_for_hits(count))[:count]
    finally:
        stream.close()


@pytest_twisted.ensureDeferred
async def test_a_2xx_means_stored_in_the_engine_and_every_hit_has_a_cursor_in_order(stored, index):
    stream = await HttpStream.open(stored.tailor_url, i=index, q="service:api")
    await stream.wait_for_head()
    lines = b"".join(
        json.dumps(line).encode() + b"\n"
        for n in range(3)
        for line in ({"index": {"_id": f"doc-{n}"}}, {"service": "api", "n": n})
    )
    status, answer = await post(f"{stored.beater_url}/{index}/_bulk", lines, "application/x-ndjson")
    assert status == 200 and not answer["errors"]
    for n in range(3):  # a real-time get: no refresh needed, so this was stored before the 2xx
        status, found = await get(f"{stored.engine_url}/{index}/_doc/doc-{n}")
        assert status == 200 and found["_source"]["n"] == n
    await send(stored, index, [3, 4])
    await send(stored, index, [5])
    hits = await stream.wait_for_hits(6)
    cursors = [hit["_cursor"] for hit in hits]
    assert all(len(c) == 20 and int(c, 16) >= 0 for c in cursors)
    assert cursors == sorted(cursors) and len(set(cursors)) == 6
    assert [hit["_id"] for hit in hits[:3]] == ["doc-0", "doc-1", "doc-2"]
    # The stored document carries its cursor, under estrom_cursor.
    status, found = await get(f"{stored.engine_url}/{index}/_doc/doc-0")
    assert found["_source"]["estrom_cursor"] == cursors[0]
    stream.close()


@pytest_twisted.ensureDeferred
async def test_backlog_gives_the_last_n_matches_then_live_ones(stored, index):
    for batch in range(4):
        await send(stored, index, range(batch * 10, batch * 10 + 10))
        await post(docs_url(stored.beater_url, index), [{"service": "web", "n": 100 + batch}])
    stream = await HttpStream.open(stored.tailor_url, i=index, q="service:api", backlog="15")
    await stream.wait_for_head()
    assert numbers(await stream.wait_for_hits(15)) == list(range(25, 40))
    await send(stored, index, [40, 41])
    assert numbers(await stream.wait_for_hits(17)) == list(range(25, 42))
    assert b'"gap"' not in stream.raw
    stream.close()
    # The engine's own search: a query on a field's words, as in the live stream.
    stream = await HttpStream.open(stored.tailor_url, i=index, q="service:web", backlog="100")
    assert numbers(await stream.wait_for_hits(4)) == [100, 101, 102, 103]
    stream.close()


@pytest_twisted.ensureDeferred
async def test_since_takes_a_time_or_a_duration(stored, index):
    await send(stored, index, [0, 1])
    stream = await HttpStream.open(stored.tailor_url, i=index, q="service:api", limit="1")
    await send(stored, index, [2])
    (hit,) = (await stream.wait_for_end())["hits"]
    await send(stored, index, [3])
    taken = datetime.datetime.fromtimestamp(int(hit["_cursor"][:12], 16) / 1000, datetime.UTC)
    since = taken.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert await first(stored, index, 2, since=since) == [2, 3]
    assert await first(stored, index, 4, since="10m") == [0, 1, 2, 3]
    assert await first(stored, index, 2, since="10m", backlog="2") == [2, 3]


@pytest_twisted.ensureDeferred
async def test_resume_after_a_cursor_gives_what_was_missed_once(stored, index):
    stream = await HttpStream.open(stored.tailor_url, i=index, q="service:api")
    await stream.wait_for_head()
    await send(stored, index, range(5))
    last = (await stream.wait_for_hits(5))[-1]["_cursor"]
    stream.close()
    await send(stored, index, range(5, 12))  # while the client is away
    stream = await HttpStream.open(stored.tailor_url, i=index, q="service:api", after=last)
    assert numbers(await stream.wait_for_hits(7)) == list(range(5, 12))
    await send(stored, index, [12])
    assert numbers(await stream.wait_for_hits(8)) == list(range(5, 13))
    assert b'"gap"' not in stream.raw
    stream.close()


@pytest_twisted.ensureDeferred
async def test_more_missed_than_a_backlog_holds_is_a_gap_with_the_newest(stored, index):
    stream = await HttpStream.open(stored.tailor_url, i=index, q="service:api", limit="1")
    await send(stored, index, [0])
    first = (await stream.wait_for_end())["hits"][0]["_cursor"]
    await send(stored, index, range(1, 3101))  # ESTROM_MAX_BACKLOG is 3,000 here
    stream = await HttpStream.open(stored.tailor_url, i=index, q="service:api", after=first)
    await stream.wait_for_head()
    assert b'"gap": true' in stream.raw
    assert numbers(await stream.wait_for_hits(3000)) == list(range(101, 3101))
    stream.close()


@pytest_twisted.ensureDeferred
async def test_backlog_and_live_meet_without_gap_or_duplicate_while_documents_pour_in(stored, index):
    # A stream open throughout sees every document: the reference order, by cursor.
    reference = await HttpStream.open(stored.tailor_url, i=index, q="service:api")
    await reference.wait_for_head()
    sending, sent = True, 0

    async def sender(worker):
        nonlocal sent
        while sending:
            await send(stored, index, [worker * 100_000 + sent + n for n in range(20)])
            sent += 20

    senders = [Deferred.fromCoroutine(sender(w)) for w in range(4)]
    await eventually(lambda: sent >= 200, what="documents sent")
    streams = []
    for _ in range(6):  # opened while documents pour in, each with a backlog of the last 50
        streams.append(await HttpStream.open(stored.tailor_url, i=index, q="service:api", backlog="50"))
        await eventually(lambda: len(streams[-1].hits) >= 50, what="the backlog")
    sending = False
    await gatherResults(senders)
    everything = await reference.wait_for_hits(sent)
    order = [hit["_cursor"] for hit in everything]
    assert len(set(order)) == sent
    for stream in streams:
        await eventually(lambda s=stream: len(s.hits) >= 50, what="the backlog")
        backlog = [hit["_cursor"] for hit in stream.hits[:50]]
        assert backlog == sorted(backlog)  # oldest first
        # Every document from the backlog's first on arrives, once. (At the seam a live hit may
        # come after backlog hits newer than it: batches in flight are stored side by side.)
        wanted = set(order[order.index(backlog[0]) :])
        await eventually(lambda s=stream, w=wanted: w <= {hit["_cursor"] for hit in s.hits}, what="every hit")
        got = [hit["_cursor"] for hit in stream.hits]
        assert len(got) == len(set(got)), "a hit came twice"
        stream.close()
    reference.close()


@pytest_twisted.ensureDeferred
async def test_wamp_clients_ask_for_a_backlog_and_bad_options_are_refused(stored, index):
    session = await wamp_session(stored.router_url)
    try:
        sid = await session.call(api.REGISTER, index, "service:api")
        await send(stored, index, range(3))
        answer = await session.call(api.BACKLOG, sid, {"last": 2})
        assert numbers(answer["hits"]) == [1, 2] and answer["next"] is None and not answer["gap"]
        for options, says in [
            ({"last": 0}, "'last' must be a whole number from 1 to 3000"),
            ({"last": 3001}, "from 1 to 3000"),
            ({"after": "zz"}, "'after' must be a cursor"),
            ({"since": "yesterday"}, "'since' must be a duration"),
            ({"bogus": 1}, "unknown option(s): bogus"),
            ({}, "give 'last', 'since' or 'after'"),
            ("last", "the options are an object"),
        ]:
            with pytest.raises(ApplicationError) as raised:
                await session.call(api.BACKLOG, sid, options)
            assert raised.value.error == api.INVALID_ARGUMENT and says in raised.value.args[0]
        with pytest.raises(ApplicationError) as raised:
            await session.call(api.BACKLOG, "0123456789abcdef", {"last": 1})
        assert raised.value.error == api.UNKNOWN_SUBSCRIPTION
    finally:
        session.leave()


@pytest_twisted.ensureDeferred
async def test_tailor_refuses_bad_backlog_parameters(stored, index):
    for params, says in [
        ({"backlog": "0"}, "'backlog' must be a positive integer"),
        ({"backlog": "3001"}, "from 1 to 3000"),
        ({"after": "nope"}, "'after' must be a cursor"),
        ({"since": "soon"}, "'since' must be a duration"),
    ]:
        status, answer = await get(f"{stored.tailor_url}/api/v0.1/docs", {"i": index, "q": "x", **params})
        assert status == 400 and says in answer["error"], (params, answer)


@pytest_twisted.ensureDeferred
async def test_estrom_tail_shows_the_last_n_then_resumes_after_a_reconnect(stored, index):
    await send(stored, index, range(5))
    port = stored.ports.tailor + 2
    url = stored.start_tailor("tailor-cli", port=port)
    out, process = run("--url", url, "-i", index, "service:api", "-n", "3", "--format", "{n}")
    try:
        await out.wait_for(lambda: out.lines == ["2", "3", "4"], what=f"the backlog ({out.lines})")
        stored.stop("tailor-cli")
        await out.wait_for(lambda: b"reconnecting" in out.stderr, what="a word on stderr")
        await send(stored, index, range(5, 8))  # while it is away
        stored.start_tailor("tailor-cli", port=port)
        await out.wait_for(lambda: len(out.lines) >= 6, what=f"what was missed ({out.lines})")
        await send(stored, index, [8])
        await out.wait_for(lambda: len(out.lines) >= 7, what="a live one")
        assert out.lines == [str(n) for n in range(2, 9)]
        assert b"resuming after the last document shown" in out.stderr
        assert b"missing" not in out.stderr
    finally:
        process.signalProcess(signal.SIGINT)
        stored.stop("tailor-cli")
    await out.wait_for(lambda: out.ended, what="estrom tail to exit")


@pytest_twisted.ensureDeferred
async def test_large_stored_documents_come_a_few_at_a_time(stored, index):
    # Each is about 3 MB: a page holds at most 4 MiB as Beater sends it, so one or two a page.
    blob = "x" * 3_000_000
    for n in range(4):
        await send(stored, index, [n], blob=blob)
    stream = await HttpStream.open(stored.tailor_url, i=index, q="service:api", backlog="4")
    hits = await stream.wait_for_hits(4)
    assert numbers(hits) == [0, 1, 2, 3] and all(len(hit["_source"]["blob"]) == 3_000_000 for hit in hits)
    stream.close()


@pytest_twisted.ensureDeferred
async def test_an_engine_that_refuses_to_store_is_a_503_not_the_senders_fault(stored, index):
    await send(stored, index, [0])
    status, _ = await post(f"{stored.engine_url}/{index}/_close", b"")
    assert status == 200
    try:
        status, answer = await post(docs_url(stored.beater_url, index), [{"service": "api", "n": 1}])
        assert status == 503 and "could not store" in answer["error"], answer
    finally:
        status, _ = await post(f"{stored.engine_url}/{index}/_open", b"")
        assert status == 200
    await eventually(
        lambda: Deferred.fromCoroutine(
            post(docs_url(stored.beater_url, index), [{"service": "api", "n": 2}])
        ).addCallback(lambda answer: answer[0] == 200),
        what="the index open again",
    )


@pytest_twisted.ensureDeferred
async def test_a_refused_document_does_not_take_the_stored_one_with_its_id_away(stored, index):
    lines = b"".join(
        json.dumps(line).encode() + b"\n" for line in ({"index": {"_id": "kept"}}, {"service": "api", "n": 1})
    )
    status, answer = await post(f"{stored.beater_url}/{index}/_bulk", lines, "application/x-ndjson")
    assert status == 200 and not answer["errors"]
    # n is a number in this index now: a string there is refused, and so is its _id's item.
    lines = b"".join(
        json.dumps(line).encode() + b"\n"
        for line in ({"index": {"_id": "kept"}}, {"service": "api", "n": "abc"})
    )
    status, answer = await post(f"{stored.beater_url}/{index}/_bulk", lines, "application/x-ndjson")
    assert status == 200 and answer["items"][0]["index"]["status"] == 400
    status, found = await get(f"{stored.engine_url}/{index}/_doc/kept")
    assert status == 200 and found["_source"]["n"] == 1


@pytest_twisted.ensureDeferred
async def test_estrom_tail_since_prints_the_documents_since_then(stored, index):
    await send(stored, index, range(3))
    out, process = run(
        "--url", stored.tailor_url, "-i", index, "service:api", "--since", "10m", "--format", "{n}"
    )
    try:
        await out.wait_for(lambda: out.lines == ["0", "1", "2"], what=f"the documents since ({out.lines})")
    finally:
        process.signalProcess(signal.SIGINT)
    await out.wait_for(lambda: out.ended, what="estrom tail to exit")
