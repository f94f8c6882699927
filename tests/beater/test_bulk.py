"""Beater's Elasticsearch ``_bulk`` endpoint, as shippers use it, against the real stack."""

from __future__ import annotations

import gzip
import json

import pytest
import pytest_twisted

from estrom.clients import HttpStream, http, post


def ndjson(*lines) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


async def tail(stack, index, query="service:api") -> HttpStream:
    stream = await HttpStream.open(stack.tailor_url, i=index, q=query)
    await stream.wait_for_head()
    return stream


@pytest_twisted.ensureDeferred
async def test_bulk_items_are_answered_as_the_engine_does_and_delivered_in_order(stack, index):
    stream = await tail(stack, index)
    body = ndjson(
        {"index": {"_index": index, "_id": "first"}},
        {"service": "api", "n": 1},
        {"create": {"_index": index}},
        {"service": "api", "n": 2},
        {"index": {"_index": index}},
        {"service": "db", "n": 3},
    )
    status, answer = await post(f"{stack.beater_url}/_bulk", body, "application/x-ndjson")
    assert status == 200, answer
    assert answer["errors"] is False and isinstance(answer["took"], int)
    kinds = [next(iter(item)) for item in answer["items"]]
    assert kinds == ["index", "create", "index"]
    results = [next(iter(item.values())) for item in answer["items"]]
    assert [result["status"] for result in results] == [201, 201, 201]
    assert all(result["_index"] == index and result["result"] == "created" for result in results)
    assert results[0]["_id"] == "first"
    hits = await stream.wait_for_hits(2)
    # A hit carries the document's _id as the engine would store it: the action's, or the one
    # answered to the sender.
    assert [(hit["_id"], hit["_source"]["n"]) for hit in hits] == [("first", 1), (results[1]["_id"], 2)]

    # /<index>/_bulk names the index for actions that name none; PUT as well as POST.
    response = await http.put(
        f"{stack.beater_url}/{index}/_bulk",
        data=ndjson({"index": {}}, {"service": "api", "n": 4}),
        headers={"Content-Type": "application/json"},
    )
    assert response.code == 200 and (await response.json())["errors"] is False
    assert (await stream.wait_for_hits(3))[-1]["_source"]["n"] == 4
    stream.close()


@pytest_twisted.ensureDeferred
async def test_bad_items_are_refused_one_by_one_and_the_good_ones_delivered(stack, index):
    stream = await tail(stack, index)
    body = ndjson(
        {"index": {}},
        {"service": "api", "n": 1},
        {"index": {}},
        b'{"service": "api", "n": ',
        {"delete": {"_id": "x"}},
        {"update": {"_id": "y"}},
        {"doc": {"service": "api"}},
        {"index": {"_index": "Bad"}},
        {"service": "api", "n": 0},
        {"index": {}},
        {"service": "api", "n": 2},
    )
    status, answer = await post(f"{stack.beater_url}/{index}/_bulk", body, "application/x-ndjson")
    assert status == 200 and answer["errors"] is True
    statuses = [next(iter(item.values()))["status"] for item in answer["items"]]
    assert statuses == [201, 400, 400, 400, 400, 201]
    errors = [next(iter(item.values())).get("error", {}).get("reason", "") for item in answer["items"]]
    assert "not valid JSON" in errors[1] and "does not support 'delete'" in errors[2]
    hits = await stream.wait_for_hits(2)
    assert [hit["_source"]["n"] for hit in hits] == [1, 2]
    stream.close()


@pytest_twisted.ensureDeferred
async def test_gzip_bodies_are_taken_by_both_apis_and_a_gzip_bomb_is_refused(stack, index):
    stream = await tail(stack, index)
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    bulk = gzip.compress(ndjson({"index": {}}, {"service": "api", "n": 1}))
    response = await http.post(f"{stack.beater_url}/{index}/_bulk", data=bulk, headers=headers)
    assert response.code == 200 and (await response.json())["errors"] is False
    docs = gzip.compress(ndjson({"service": "api", "n": 2}))
    response = await http.post(f"{stack.beater_url}/api/v0.1/docs/{index}", data=docs, headers=headers)
    assert response.code == 200, await response.text()
    assert [hit["_source"]["n"] for hit in await stream.wait_for_hits(2)] == [1, 2]

    bomb = gzip.compress(b"\n" * 200_000_000)  # 200 MB of nothing in about 200 kB
    response = await http.post(f"{stack.beater_url}/{index}/_bulk", data=bomb, headers=headers)
    assert response.code == 413 and "once gunzipped" in (await response.json())["error"]
    response = await http.post(
        f"{stack.beater_url}/{index}/_bulk", data=b"{}", headers={**headers, "Content-Encoding": "br"}
    )
    assert response.code == 415 and "Content-Encoding" in (await response.json())["error"]
    stream.close()


@pytest_twisted.ensureDeferred
async def test_the_start_up_probes_of_shippers_are_answered(stack):
    response = await http.get(stack.beater_url + "/")
    info = await response.json()
    assert response.code == 200 and info["version"]["number"].startswith("8.")
    assert info["tagline"] == "You Know, for Search"
    assert response.headers.getRawHeaders("X-Elastic-Product") == ["Elasticsearch"]
    response = await http.head(stack.beater_url + "/")
    assert response.code == 200
    # rsyslog's omelasticsearch sends nothing before a HEAD /_cat/health answers 200.
    response = await http.head(stack.beater_url + "/_cat/health")
    assert response.code == 200
    response = await http.get(stack.beater_url + "/_cat/health")
    assert response.code == 200 and " estrom green" in await response.text()
    response = await http.get(stack.beater_url + "/_cluster/health")
    assert response.code == 200 and (await response.json())["status"] == "green"
    response = await http.get(stack.beater_url + "/_bulk")
    assert response.code == 405 and response.headers.getRawHeaders("Allow") == ["POST, PUT"]
    for path in ("/some-index", "/some-index/_search", "/_cat/indices", "/_cat"):
        response = await http.get(stack.beater_url + path)
        assert response.code == 404 and "error" in await response.json(), path


@pytest_twisted.ensureDeferred
async def test_an_item_the_engine_refuses_is_refused_alone(stack, index):
    # The index maps n as an integer: the engine refuses "abc" there, and only that item.
    created = await http.put(
        f"{stack.engine_url}/{index}",
        json={"mappings": {"properties": {"n": {"type": "integer"}, "service": {"type": "keyword"}}}},
    )
    assert created.code == 200, await created.text()
    stream = await tail(stack, index)
    body = ndjson(
        {"index": {}},
        {"service": "api", "n": 1},
        {"index": {}},
        {"service": "api", "n": "abc"},
        {"index": {}},
        {"service": "api", "n": 3},
    )
    status, answer = await post(f"{stack.beater_url}/{index}/_bulk", body, "application/x-ndjson")
    assert status == 200 and answer["errors"] is True
    results = [next(iter(item.values())) for item in answer["items"]]
    assert [result["status"] for result in results] == [201, 400, 201]
    assert results[1]["error"]["type"] == "mapper_parsing_exception"
    hits = await stream.wait_for_hits(2)
    assert [hit["_source"]["n"] for hit in hits] == [1, 3]
    stream.close()


@pytest.mark.parametrize("stack", ["opensearch"], indirect=True)  # routing: one engine is enough
@pytest_twisted.ensureDeferred
async def test_an_index_named_as_beaters_own_paths_takes_documents_and_the_paths_stay_beaters(stack):
    # /healthz, /readyz, /metrics and /api are Beater's; /<that name>/_bulk, _doc and _create
    # are an index's, as the engine has them.
    for name in ("healthz", "readyz", "metrics", "api"):
        stream = await tail(stack, name)
        status, answer = await post(
            f"{stack.beater_url}/{name}/_bulk",
            ndjson({"index": {}}, {"service": "api", "n": 1}),
            "application/x-ndjson",
        )
        assert status == 200 and answer["errors"] is False, (name, answer)
        status, answer = await post(f"{stack.beater_url}/{name}/_doc", {"service": "api", "n": 2})
        assert status == 201 and answer["_index"] == name, (name, answer)
        response = await http.put(
            f"{stack.beater_url}/{name}/_create/three",
            data=json.dumps({"service": "api", "n": 3}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert response.code == 201, (name, await response.text())
        hits = await stream.wait_for_hits(3)
        assert [(hit["_index"], hit["_source"]["n"]) for hit in hits] == [(name, 1), (name, 2), (name, 3)]
        stream.close()
    for path, status in (("/healthz", 200), ("/readyz", 200), ("/metrics", 200)):
        response = await http.get(stack.beater_url + path)
        assert response.code == status, path
        await response.content()
