"""Data streams: shippers of the Elastic world write ``create`` actions to
``<type>-<dataset>-<namespace>``. With the store, Beater writes them into a data stream of that
name (an index template of its own when none matches), with the ``@timestamp`` a data stream
needs; streams and topics are keyed by the data stream's name. Elasticsearch 7 without X-Pack has
no data streams: there, it is an index of that name."""

from __future__ import annotations

import json
import re

import pytest_twisted

from estrom.clients import HttpStream, get, http, post
from estrom.cursor import cursor_iso
from tests.store.test_resends import bulk


def stream_name(index: str) -> str:
    """A data stream name of this test's own: its dataset may not hold a dash."""
    return f"logs-{re.sub(r'[^a-z0-9]+', '.', index)[:80]}-default"


def creates(name: str, documents: list[tuple[str | None, dict]]) -> bytes:
    return bulk(name, documents, "create")


async def send(stack, body: bytes) -> dict:
    status, answer = await post(
        f"{stack.beater_url}/_bulk?require_data_stream=true", body, "application/x-ndjson"
    )
    assert status == 200, answer
    return answer


async def data_stream(stack, name: str) -> dict | None:
    status, answer = await get(f"{stack.engine_url}/_data_stream/{name}")
    if stack.engine == "elasticsearch7":
        assert status == 405  # no data streams in Elasticsearch 7 without X-Pack
        return None
    assert status == 200, answer
    (found,) = answer["data_streams"]
    return found


async def stored_sources(stack, name: str) -> list[dict]:
    await post(f"{stack.engine_url}/{name}/_refresh", b"")
    status, answer = await post(
        f"{stack.engine_url}/{name}/_search", {"size": 100, "sort": [{"estrom_cursor": "asc"}]}
    )
    assert status == 200, answer
    return [hit["_source"] for hit in answer["hits"]["hits"]]


@pytest_twisted.ensureDeferred
async def test_create_actions_to_a_data_stream_name_are_stored_in_a_data_stream(stored, index):
    name = stream_name(index)
    stream = await HttpStream.open(stored.tailor_url, i=name, q="service:api")
    await stream.wait_for_head()
    answer = await send(
        stored,
        creates(
            name,
            [
                (None, {"service": "api", "n": 0}),
                (None, {"service": "api", "n": 1, "@timestamp": "2026-01-02T03:04:05.678Z"}),
                (None, {"service": "db", "n": 2}),
            ],
        ),
    )
    assert answer["errors"] is False
    assert [item["create"]["_index"] for item in answer["items"]] == [name] * 3

    hits = await stream.wait_for_hits(2)
    assert [hit["_index"] for hit in hits] == [name, name]  # the data stream's name, as sent
    assert [hit["_source"] for hit in hits] == [
        {"service": "api", "n": 0},
        {"service": "api", "n": 1, "@timestamp": "2026-01-02T03:04:05.678Z"},
    ]
    found = await data_stream(stored, name)
    if found is not None:
        assert found["timestamp_field"]["name"] == "@timestamp"
        assert found["indices"][0]["index_name"].startswith(f".ds-{name}-")
    sources = await stored_sources(stored, name)
    assert [source["n"] for source in sources] == [0, 1, 2]
    # In a data stream, the document without one has the time Beater took it (its cursor's); the
    # other keeps its own. An index takes documents as they are.
    taken = cursor_iso(hits[0]["_cursor"]) if found is not None else None
    assert sources[0].get("@timestamp") == taken
    assert sources[1]["@timestamp"] == "2026-01-02T03:04:05.678Z"

    # A stream that resumes reads its backlog from the data stream, keyed by its name.
    resumed = await HttpStream.open(stored.tailor_url, i=name, q="service:api", backlog="10")
    backlog = await resumed.wait_for_hits(2)
    assert [(hit["_index"], hit["_id"]) for hit in backlog] == [(name, hit["_id"]) for hit in hits]
    stream.close()
    resumed.close()


@pytest_twisted.ensureDeferred
async def test_a_named_documents_resend_to_a_data_stream_is_taken_and_stored_once(stored, index):
    name = stream_name(index)
    stream = await HttpStream.open(stored.tailor_url, i=name, q="service:api")
    await stream.wait_for_head()
    body = creates(name, [("order-1", {"service": "api", "n": 1})])
    await send(stored, body)
    # A data stream takes no second document of one _id (409): the sender's resend is taken
    # (it did not hear the first answer), and the copy stored first stays.
    answer = await send(stored, body)
    assert answer["errors"] is False
    await send(stored, creates(name, [(None, {"service": "api", "n": 2})]))
    hits = await stream.wait_for_hits(2)
    assert [hit["_source"]["n"] for hit in hits] == [1, 2]  # Tailor knows the named resend
    assert [source["n"] for source in await stored_sources(stored, name)] == [1, 2]
    stream.close()


@pytest_twisted.ensureDeferred
async def test_a_timestamp_that_is_no_date_is_refused_with_the_engines_reason(stored, index):
    name = stream_name(index)
    await send(stored, creates(name, [(None, {"service": "api", "n": 0})]))  # the stream exists
    status, answer = await post(
        f"{stored.beater_url}/_bulk",
        creates(name, [(None, {"service": "api", "@timestamp": "yesterday"})]),
        "application/x-ndjson",
    )
    if stored.engine == "elasticsearch7":  # an index: the engine mapped @timestamp as text
        assert status == 200 and answer["errors"] is False
        return
    assert status == 200 and answer["errors"] is True, answer
    (item,) = answer["items"]
    assert item["create"]["status"] == 400, item
    assert item["create"]["error"]["type"] == "mapper_parsing_exception"
    assert "@timestamp" in item["create"]["error"]["reason"], item
    assert [source["n"] for source in await stored_sources(stored, name)] == [0]


@pytest_twisted.ensureDeferred
async def test_an_operators_index_template_makes_the_data_stream(stored, index):
    if stored.engine == "elasticsearch7":
        # Still a test of something: there, Beater makes an index of the name, as before.
        name = stream_name(index)
        await send(stored, creates(name, [(None, {"service": "api"})]))
        status, _ = await get(f"{stored.engine_url}/{name}/_mapping")
        assert status == 200 and await data_stream(stored, name) is None
        return
    dataset = re.sub(r"[^a-z0-9]+", ".", index)[:80]
    name = f"logs-{dataset}-ops"
    template = {
        "index_patterns": [f"logs-{dataset}-*"],
        "data_stream": {},
        "priority": 300,
        "template": {"mappings": {"properties": {"service": {"type": "keyword"}}}},
    }
    status, answer = await _put(stored, f"/_index_template/t-{dataset}", template)
    assert status == 200, answer
    await send(stored, creates(name, [(None, {"service": "api"})]))
    found = await data_stream(stored, name)
    assert found["template"] == f"t-{dataset}"
    status, mapping = await get(f"{stored.engine_url}/{name}/_mapping")
    (backing,) = mapping.values()
    assert backing["mappings"]["properties"]["service"] == {"type": "keyword"}  # the operator's
    assert backing["mappings"]["properties"]["estrom_cursor"] == {"type": "keyword"}


async def _put(stack, path: str, body: dict) -> tuple[int, dict]:
    response = await http.put(
        stack.engine_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    return response.code, json.loads(await response.content())
