"""Beater's HTTP ingest: the three shapes Logstash and curl send, and every bad input."""

from __future__ import annotations

import gzip
import json

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from estrom import api
from estrom.clients import HttpStream, Received, docs_url, http, percolations, post, wamp_session


async def tail(stack, index, query="service:api") -> HttpStream:
    stream = await HttpStream.open(stack.tailor_url, i=index, q=query)
    await stream.wait_for_head()
    return stream


def compact(documents) -> bytes:
    return json.dumps(documents, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "content_type, body, count",
    [
        # Logstash http output, format => "json": one object per request.
        ("application/json", {"service": "api", "n": 1}, 1),
        # format => "json_batch": an array of objects.
        ("application/json; charset=UTF-8", [{"service": "api", "n": 1}, {"service": "api", "n": 2}], 2),
        # NDJSON, one object per line; blank lines and a missing final newline are fine.
        (
            "application/x-ndjson",
            b'{"service": "api", "n": 1}\n\n{"service": "api", "n": 2}\n{"service": "api", "n": 3}',
            3,
        ),
    ],
    ids=["json-object", "json-array", "ndjson"],
)
@pytest_twisted.ensureDeferred
async def test_each_shape_is_accepted_and_delivered(stack, index, content_type, body, count):
    stream = await tail(stack, index)
    status, answer = await post(docs_url(stack.beater_url, index), body, content_type)
    assert status == 200, answer
    assert answer == {"accepted": count, "matched": count, "published": count}
    hits = await stream.wait_for_hits(count)
    assert [hit["_source"]["n"] for hit in hits] == list(range(1, count + 1))
    stream.close()


@pytest_twisted.ensureDeferred
async def test_documents_nobody_asked_for_are_accepted(stack, index):
    status, answer = await post(docs_url(stack.beater_url, index + "-unwatched"), [{"service": "api"}])
    assert (status, answer) == (200, {"accepted": 1, "matched": 0, "published": 0})


@pytest_twisted.ensureDeferred
async def test_a_query_on_a_field_not_seen_before_matches_when_it_arrives(stack, index):
    # The percolator index maps unknown fields as text: nothing has to be declared in advance.
    stream = await tail(stack, index, "kubernetes.pod:web-7 AND NOT level:debug")
    await post(
        docs_url(stack.beater_url, index),
        [
            {"kubernetes": {"pod": "web-7"}, "level": "debug"},
            {"kubernetes": {"pod": "web-7"}, "level": "warn"},
        ],
    )
    hits = await stream.wait_for_hits(1)
    assert hits[0]["_source"]["level"] == "warn"
    stream.close()


@pytest_twisted.ensureDeferred
async def test_query_without_a_field_searches_every_field(stack, index):
    stream = await tail(stack, index, "timeout AND checkout")
    await post(
        docs_url(stack.beater_url, index),
        [{"msg": "timeout", "service": "checkout"}, {"msg": "timeout", "service": "cart"}],
    )
    hits = await stream.wait_for_hits(1)
    assert hits[0]["_source"]["service"] == "checkout"
    stream.close()


BAD = [
    ("application/json", b"{not json", 422, "not valid JSON"),
    ("application/json", b"", 422, "the body is empty"),
    ("application/json", b"   \n", 422, "the body is empty"),
    ("application/json", b"[]", 422, "the array is empty"),
    ("application/json", b'"a string"', 422, "a document is a JSON object, not str"),
    ("application/json", b'[{"a": 1}, 2]', 422, "item 2: a document is a JSON object, not int"),
    ("application/x-ndjson", b'{"a": 1}\n{"a": 2}\n{"a":\n', 422, "line 3: not valid JSON"),
    ("application/x-ndjson", b'{"a": 1}\n[1]\n', 422, "line 2: a document is a JSON object, not list"),
    ("application/json", b'\xff\xfe{"a": 1}', 422, "not UTF-8"),
    ("text/plain", b'{"a": 1}', 415, "unsupported Content-Type 'text/plain'"),
    ("", b'{"a": 1}', 415, "unsupported Content-Type"),
    ("application/json; charset=latin-1", b'{"a": 1}', 415, "unsupported charset"),
]


@pytest.mark.parametrize("content_type, body, status, message", BAD, ids=[b[3] for b in BAD])
@pytest_twisted.ensureDeferred
async def test_bad_input_is_refused_with_a_json_error_and_nothing_is_published(
    stack, index, content_type, body, status, message
):
    stream = await tail(stack, index, "*")
    got, answer = await post(docs_url(stack.beater_url, index), body, content_type)
    assert got == status
    assert message in answer["error"]
    # Nothing of the refused request was published: the next hit is the next request's.
    assert (await post(docs_url(stack.beater_url, index), {"marker": True}))[0] == 200
    hits = await stream.wait_for_hits(1)
    assert [hit["_source"] for hit in hits] == [{"marker": True}]
    stream.close()


@pytest_twisted.ensureDeferred
async def test_a_body_over_the_size_limit_is_refused_with_413(stack, index):
    big = json.dumps([{"blob": "x" * 1000}] * 11_000).encode()  # > 10 MiB default
    status, answer = await post(docs_url(stack.beater_url, index), big)
    assert status == 413
    assert "larger than" in answer["error"]


@pytest.mark.parametrize("stack", ["opensearch"], indirect=True)  # router limits: one engine is enough
@pytest_twisted.ensureDeferred
async def test_documents_as_large_as_ingest_takes_reach_streams_whole(stack, index):
    # Beater and Tailor speak RawSocket to the router, which carries at most 16 MiB a message.
    stream = await tail(stack, index, "kind:big")
    session = await wamp_session(stack.router_url)
    try:
        # A Beater whose batches leave with 18 documents: the two requests below share one.
        held = stack.start_beater(
            "beater-held",
            port=stack.ports.beater + 3,
            ESTROM_BATCH_MAX_DOCS="18",
            ESTROM_BATCH_MAX_WAIT_MS="600000",
        )
        received = Received()
        sid = await session.call(api.REGISTER, index, "kind:many")
        await session.subscribe(received, api.topic(sid))
        # One 9 MiB document (under the 10 MiB body limit), to the stream.
        status, _ = await post(docs_url(stack.beater_url, index), {"kind": "big", "blob": "x" * (9 << 20)})
        assert status == 200
        (hit,) = await stream.wait_for_hits(1)
        assert len(hit["_source"]["blob"]) == 9 << 20
        # Two requests of nine 1 MiB documents in one batch, all matching one query: 18 MiB of
        # hits, more than one message holds.
        before = await percolations(stack.engine_url, index)
        answers = await gatherResults(
            [
                Deferred.fromCoroutine(
                    post(
                        docs_url(held, index), [{"kind": "many", "n": n, "blob": "y" * (1 << 20)} for n in ns]
                    )
                )
                for ns in (range(9), range(9, 18))
            ]
        )
        assert [status for status, _ in answers] == [200, 200]
        assert await percolations(stack.engine_url, index) == before + 1
        hits = await received.wait_for(18)
        assert len(received.events) > 1  # more than one message
        ns = [hit["_source"]["n"] for hit in hits]
        # Each request's documents in their order (which request came first is not known).
        assert [n for n in ns if n < 9] == list(range(9))
        assert [n for n in ns if n >= 9] == list(range(9, 18))
        assert all(len(hit["_source"]["blob"]) == 1 << 20 for hit in hits)
    finally:
        session.leave()
        stream.close()
        stack.stop("beater-held")


@pytest_twisted.ensureDeferred
async def test_a_document_larger_than_the_router_carries_is_refused_with_422(stack, index):
    stream = await tail(stack, index, "*")
    floats = {"f": [0.5] * 2_200_000}  # 8.8 MB of JSON, 19.8 MB of CBOR (over 16 MiB)
    status, answer = await post(docs_url(stack.beater_url, index), compact([{"ok": 1}, floats]))
    assert status == 422  # it will never pass: a status shippers drop instead of resending
    assert "item 2: the document is 19800008 bytes as published" in answer["error"]
    assert (await post(docs_url(stack.beater_url, index), {"marker": True}))[0] == 200  # and Beater goes on
    hits = await stream.wait_for_hits(1)
    assert [hit["_source"] for hit in hits] == [{"marker": True}]
    stream.close()


@pytest.mark.parametrize("path", ["/api/v0.1/docs/Events", "/api/v0.1/docs/_x", "/api/v0.1/docs/a%2Fb"])
@pytest_twisted.ensureDeferred
async def test_an_invalid_index_name_is_refused(stack, path):
    status, answer = await post(stack.beater_url + path, {"a": 1})
    assert status == 400
    assert "index name" in answer["error"]


@pytest_twisted.ensureDeferred
async def test_wrong_method_and_unknown_paths_answer_json(stack):
    response = await http.get(stack.beater_url + "/api/v0.1/docs/events")
    assert response.code == 405
    assert response.headers.getRawHeaders("Allow") == ["POST"]
    assert "error" in json.loads(await response.content())
    response = await http.post(stack.beater_url + "/nope", data=b"{}")
    assert response.code == 404
    assert "error" in json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_documents_that_contradict_the_source_mapping_are_refused(stack, index):
    # The percolator index follows the source index's mapping when it exists.
    created = await http.put(
        f"{stack.engine_url}/{index}",
        json={"mappings": {"properties": {"status": {"type": "integer"}, "level": {"type": "keyword"}}}},
    )
    assert created.code == 200, await created.text()
    stream = await tail(stack, index, "status:[500 TO 599] AND level:ERROR")
    status, answer = await post(
        docs_url(stack.beater_url, index),
        [
            {"status": 503, "level": "ERROR"},
            {"status": 404, "level": "ERROR"},
            {"status": 503, "level": "error"},
        ],
    )
    assert status == 200, answer
    hits = await stream.wait_for_hits(1)
    # A numeric range, and a keyword compared as-is (not analysed to lowercase).
    assert [hit["_source"] for hit in hits] == [{"status": 503, "level": "ERROR"}]
    status, answer = await post(docs_url(stack.beater_url, index), {"status": "not a number"})
    assert status == 422
    assert "search engine refused the documents" in answer["error"]
    stream.close()


@pytest_twisted.ensureDeferred
async def test_all_documents_of_a_request_are_percolated_in_one_engine_request(stack, index):
    stream = await tail(stack, index, "service:api")
    before = await percolations(stack.engine_url, index)
    status, answer = await post(
        docs_url(stack.beater_url, index), [{"service": "api", "n": n} for n in range(50)]
    )
    assert (status, answer["published"]) == (200, 50)
    assert await percolations(stack.engine_url, index) == before + 1
    assert len(await stream.wait_for_hits(50)) == 50
    stream.close()


@pytest_twisted.ensureDeferred
async def test_every_matching_query_gets_its_hits_however_many_match(stack, index):
    # A Beater that fetches matching queries two at a time must still find all seven.
    beater = stack.start_beater("beater-paging", port=stack.ports.beater + 1, ESTROM_PERCOLATE_PAGE_SIZE="2")
    try:
        queries = [
            "service:api",
            "level:error",
            "api",
            "error",
            "service:api AND level:error",
            "*",
            "msg:disk",
        ]
        streams = [await tail(stack, index, query) for query in queries]
        status, answer = await post(
            docs_url(stack.beater_url, index).replace(stack.beater_url, beater),
            {"service": "api", "level": "error", "msg": "disk full"},
        )
        assert (status, answer) == (200, {"accepted": 1, "matched": 1, "published": 7})
        for stream in streams:
            assert len(await stream.wait_for_hits(1)) == 1
            stream.close()
    finally:
        stack.stop("beater-paging")


@pytest_twisted.ensureDeferred
async def test_a_numeric_range_in_a_query_string_compares_numbers(stack, index):
    stream = await tail(stack, index, "status:[500 TO 599] AND service:api")
    docs = [
        {"status": 60, "service": "api"},
        {"status": 503, "service": "api"},
        {"status": 503, "service": "db"},
    ]
    await post(docs_url(stack.beater_url, index), docs)
    hits = await stream.wait_for_hits(1)
    assert [hit["_source"] for hit in hits] == [docs[1]]  # "60" sorts between "500" and "599" as text
    stream.close()


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest_twisted.ensureDeferred
async def test_large_bodies_parsed_off_the_reactor_are_answered_as_small_ones(
    stack, sole_beater, index, gzipped
):
    # Every body of 1 KiB or more (64 bytes gzipped) is gunzipped and parsed in a thread.
    sole_beater(ESTROM_OFF_REACTOR_BYTES="1024")
    stream = await tail(stack, index)
    url = docs_url(stack.beater_url, index)

    def encoded(lines: list[bytes]) -> tuple[bytes, dict]:
        body = b"\n".join(lines)
        if not gzipped:
            return body, {"Content-Type": "application/x-ndjson"}
        return gzip.compress(body), {
            "Content-Type": "application/x-ndjson",
            "Content-Encoding": "gzip",
        }

    good = [json.dumps({"service": "api", "n": n, "pad": "x" * 100}).encode() for n in range(2000)]
    body, headers = encoded(good)
    response = await http.post(url, data=body, headers=headers)
    assert (response.code, await response.json()) == (
        200,
        {"accepted": 2000, "matched": 2000, "published": 2000},
    )
    assert [hit["_source"]["n"] for hit in await stream.wait_for_hits(2000)] == list(range(2000))
    # What the parser refuses in a thread is the same 422, naming the line.
    body, headers = encoded([*good[:1500], b'{"service": "api", "n": NaN}', *good[1500:]])
    response = await http.post(url, data=body, headers=headers)
    assert response.code == 422 and "line 1501" in (await response.json())["error"]
    stream.close()
