"""Beater answers as an Elasticsearch cluster where clients look, on the running system: the
product header, versioned media types in and out, `_bulk` items with a type as Elasticsearch 7,
the document API the clients' `index()` calls, and the probes shippers make before they send."""

from __future__ import annotations

import json

import pytest_twisted

from estrom.clients import HttpStream, http

V8 = "application/vnd.elasticsearch+json; compatible-with=8"
V8_NDJSON = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"


@pytest_twisted.ensureDeferred
async def test_versioned_media_types_in_and_out(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="service:api")
    try:
        await stream.wait_for_head()
        body = "".join(json.dumps(line) + "\n" for line in ({"index": {}}, {"service": "api", "n": 1}))
        response = await http.post(
            f"{stack.beater_url}/{index}/_bulk",
            data=body.encode(),
            headers={"Content-Type": V8_NDJSON, "Accept": V8},
        )
        assert response.code == 200
        assert response.headers.getRawHeaders("Content-Type") == [V8]
        assert response.headers.getRawHeaders("X-Elastic-Product") == ["Elasticsearch"]
        answer = await response.json()
        assert "_type" not in answer["items"][0]["index"] and answer["items"][0]["index"]["status"] == 201
        # The document API: POST names it, PUT takes the sender's _id.
        response = await http.post(
            f"{stack.beater_url}/{index}/_doc",
            data=json.dumps({"service": "api", "n": 2}).encode(),
            headers={"Content-Type": V8, "Accept": V8},
        )
        assert response.code == 201 and (await response.json())["result"] == "created"
        response = await http.put(
            f"{stack.beater_url}/{index}/_create/mine",
            data=json.dumps({"service": "api", "n": 3}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert response.code == 201 and (await response.json())["_id"] == "mine"
        hits = await stream.wait_for_hits(3)
        assert [hit["_source"]["n"] for hit in hits] == [1, 2, 3]
        assert hits[2]["_id"] == "mine" and hits[2].get("_named") is True
        # Refused clearly: another compatible-with, an array to the document API, no _id on PUT.
        for method, path, data, content_type, status, says in [
            (
                "POST",
                "/_bulk",
                body,
                "application/vnd.elasticsearch+x-ndjson; compatible-with=6",
                400,
                "compatible-with=6",
            ),
            ("POST", f"/{index}/_doc", "[{}, {}]", "application/json", 422, "one JSON object"),
            ("PUT", f"/{index}/_doc", "{}", "application/json", 405, "_doc/<id>"),
            ("PUT", f"/{index}/_doc/a/b", "{}", "application/json", 404, "_doc/<id>"),
        ]:
            response = await http.request(
                method, stack.beater_url + path, data=data.encode(), headers={"Content-Type": content_type}
            )
            assert response.code == status, (path, response.code)
            assert says in (await response.json())["error"], path
    finally:
        stream.close()


@pytest_twisted.ensureDeferred
async def test_as_elasticsearch_7_the_bulk_items_have_a_type(stack, sole_beater, index):
    sole_beater(ESTROM_COMPAT_VERSION="7.10.2")
    response = await http.get(stack.beater_url + "/")
    assert (await response.json())["version"]["number"] == "7.10.2"
    body = "".join(json.dumps(line) + "\n" for line in ({"index": {"_index": index}}, {"n": 1}))
    response = await http.post(
        stack.beater_url + "/_bulk", data=body.encode(), headers={"Content-Type": "application/x-ndjson"}
    )
    assert (await response.json())["items"][0]["index"]["_type"] == "_doc"


@pytest_twisted.ensureDeferred
async def test_the_probes_shippers_make_before_they_send(stack):
    """As Filebeat asks them (tests/shippers/test_filebeat.py runs it): a licence, no ILM, its
    index template taken but not kept; an ILM policy refused with what to turn off."""

    async def ask(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        response = await http.request(
            method, stack.beater_url + path, data=data, headers={"Content-Type": "application/json"}
        )
        assert response.headers.getRawHeaders("X-Elastic-Product") == ["Elasticsearch"]
        return response.code, await response.json() if method != "HEAD" else None

    status, answer = await ask("GET", "/_license?human=false")
    assert status == 200 and answer["license"]["type"] == "basic" and answer["license"]["status"] == "active"
    status, answer = await ask("GET", "/_xpack")
    assert status == 200 and answer["features"]["ilm"] == {"available": False, "enabled": False}
    for kind in ("_index_template", "_template", "_component_template"):
        assert (await ask("HEAD", f"/{kind}/filebeat-7.17.29"))[0] == 404
        status, answer = await ask("GET", f"/{kind}/filebeat-7.17.29")
        assert status == 404 and "filebeat-7.17.29" in answer["error"]
        status, answer = await ask("PUT", f"/{kind}/filebeat-7.17.29", {"index_patterns": ["filebeat-*"]})
        assert (status, answer) == (200, {"acknowledged": True})
        # Not kept: asked again, still none.
        assert (await ask("HEAD", f"/{kind}/filebeat-7.17.29"))[0] == 404
    assert (await ask("GET", "/_ilm/policy/filebeat"))[0] == 404
    status, answer = await ask("PUT", "/_ilm/policy/filebeat", {"policy": {}})
    assert status == 400 and "setup.ilm.enabled: false" in answer["error"]
    status, answer = await ask("PUT", "/_data_stream/logs-nginx-default")
    assert (status, answer) == (200, {"acknowledged": True})
    status, answer = await ask("DELETE", "/_template/filebeat-7.17.29")
    assert status == 405 and "error" in answer
