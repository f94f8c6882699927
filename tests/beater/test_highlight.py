"""Why a document matched: a query registered with ``{"highlight": true}`` has its own ID, and
its hits carry the engine's own highlights of the terms that matched (api.HIGHLIGHT)."""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from beater.indexes import percolator_index
from estrom import api
from estrom.clients import HttpStream, docs_url, eventually, http, post, wamp_session


async def _hits(stack, index: str, queries: dict[str, object], documents: list[dict], highlight=True):
    """Each query's hits, registered (with highlights, or not) and subscribed to, once
    ``documents`` are posted; the last document matches every query, and comes last."""
    client = await wamp_session(stack.router_url)
    received: dict[str, list[dict]] = {}
    try:
        for name, query in queries.items():
            options = [{"highlight": True}] if highlight else []
            query_id = await client.call(api.REGISTER, index, query, *options)
            received[name] = []
            await client.subscribe(lambda *hits, into=received[name]: into.extend(hits), api.topic(query_id))
        status, answer = await post(docs_url(stack.beater_url, index), documents)
        assert status == 200, answer
        last = len(documents) - 1
        await eventually(
            lambda: all(any(hit["_source"].get("n") == last for hit in hits) for hits in received.values()),
            what="every query's hit of the last document",
        )
    finally:
        client.leave()
    return received


@pytest_twisted.ensureDeferred
async def test_hits_carry_the_engines_highlights_of_what_matched(stack, index):
    documents = [
        {"msg": "upstream timeout after 30 s", "service": "api", "ms": 3000, "n": 0},
        {"msg": "<b>timeout</b> & \"quoted\" / 'x'", "service": "web", "ms": 5, "n": 1},
        {"msg": "fine", "service": "api", "ms": 7, "n": 2},
        {"msg": "timeout", "service": "api", "ms": 1, "n": 3},  # matches every query: the last
    ]
    queries = {
        "field": "msg:timeout",
        "default": "timeout OR n:2",  # no field: every field searched
        "keyword": {"bool": {"should": [{"match": {"service": "api"}}, {"match": {"service": "web"}}]}},
        "range": "ms:>=0",
        "exists": "_exists_:msg",
    }
    hits = await _hits(stack, index, queries, documents)
    marks = {
        name: [hit.get(api.HIGHLIGHT) for hit in found if hit["_source"]["n"] < 3]
        for name, found in hits.items()
    }
    assert marks["field"] == [
        {"msg": ["upstream <em>timeout</em> after 30 s"]},
        # HTML-escaped: the document's own markup cannot pass for a highlight.
        {"msg": ["&lt;b&gt;<em>timeout</em>&lt;&#x2F;b&gt; &amp; &quot;quoted&quot; &#x2F; &#x27;x&#x27;"]},
    ]
    assert marks["default"][0] == {"msg": ["upstream <em>timeout</em> after 30 s"]}
    assert marks["keyword"] == [
        {"service": ["<em>api</em>"]},
        {"service": ["<em>web</em>"]},
        {"service": ["<em>api</em>"]},
    ]
    # What the engine cannot highlight is not guessed at: no key at all.
    assert marks["range"] == [None, None, None]
    assert marks["exists"] == [None, None, None]


@pytest_twisted.ensureDeferred
async def test_a_query_with_highlights_has_its_own_id_and_the_plain_one_pays_nothing(stack, index):
    client = await wamp_session(stack.router_url)
    try:
        plain = await client.call(api.REGISTER, index, "msg:timeout")
        marked = await client.call(api.REGISTER, index, "msg:timeout", {"highlight": True})
        assert plain != marked
        assert await client.call(api.REGISTER, index, "msg:timeout", {"highlight": False}) == plain
        assert await client.call(api.LOOKUP, marked) == {
            "index": index,
            "query": "msg:timeout",
            "highlight": True,
        }
        assert await client.call(api.LOOKUP, plain) == {"index": index, "query": "msg:timeout"}
        for options, says in [
            ({"highlight": 1}, "'highlight'"),
            ({"colour": True}, "options"),
            ([True], "options"),
        ]:
            with pytest.raises(ApplicationError) as refused:
                await client.call(api.REGISTER, index, "msg:timeout", options)
            assert refused.value.error == api.INVALID_ARGUMENT and says in refused.value.args[0]
    finally:
        client.leave()
    hits = await _hits(
        stack, index, {"plain": "msg:timeout"}, [{"msg": "a timeout", "n": 0}], highlight=False
    )
    assert hits["plain"] == [{**hits["plain"][0], "_source": {"msg": "a timeout", "n": 0}}]
    assert api.HIGHLIGHT not in hits["plain"][0]


@pytest_twisted.ensureDeferred
async def test_a_percolator_index_made_before_highlights_still_percolates(stack, index):
    # Its mapping has no estrom_highlight: percolation asks for it all the same, and the engine
    # gives nothing for a field it does not map.
    client = await wamp_session(stack.router_url)
    try:
        query_id = await client.call(api.REGISTER, index, "msg:timeout")
    finally:
        client.leave()
    name = percolator_index(index)
    answer = await http.post(
        f"{stack.engine_url}/{name}/_search",
        json={"query": {"ids": {"values": [query_id]}}, "docvalue_fields": ["estrom_not_mapped"]},
    )
    assert answer.code == 200, await answer.text()
    assert (await answer.json())["hits"]["hits"][0]["_id"] == query_id


@pytest_twisted.ensureDeferred
async def test_tailor_streams_highlights_when_asked_and_opens_an_id_for_them(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="msg:timeout", highlight="true")
    plain = await HttpStream.open(stack.tailor_url, i=index, q="msg:timeout")
    try:
        marked_id, plain_id = await stream.wait_for_head(), await plain.wait_for_head()
        assert marked_id != plain_id
        # The plain query's ID, asked for with highlights, streams the highlighted one.
        by_id = await HttpStream.open(stack.tailor_url, s=plain_id, highlight="true")
        assert await by_id.wait_for_head() == marked_id
        status, answer = await post(docs_url(stack.beater_url, index), {"msg": "a timeout"})
        assert status == 200, answer
        for marked in (stream, by_id):
            got = (await marked.wait_for_hits(1))[0]
            assert got.get(api.HIGHLIGHT) == {"msg": ["a <em>timeout</em>"]}, got
        assert api.HIGHLIGHT not in (await plain.wait_for_hits(1))[0]
        by_id.close()
    finally:
        stream.close()
        plain.close()


@pytest_twisted.ensureDeferred
async def test_stored_documents_come_with_their_highlights_too(stored, index):
    status, answer = await post(docs_url(stored.beater_url, index), [{"msg": "old timeout"}, {"msg": "old"}])
    assert status == 200, answer
    stream = await HttpStream.open(stored.tailor_url, i=index, q="msg:timeout", highlight="true", backlog="5")
    try:
        hit = (await stream.wait_for_hits(1))[0]
        assert hit["_source"] == {"msg": "old timeout"} and hit[api.HIGHLIGHT] == {
            "msg": ["old <em>timeout</em>"]
        }
    finally:
        stream.close()
