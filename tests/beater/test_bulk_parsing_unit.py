"""The ``_bulk`` body, item by item, gzip bodies, and the statuses answered: no engine needed."""

from __future__ import annotations

import gzip
import json
from io import BytesIO
from types import SimpleNamespace

import pytest
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from beater.bulk import MAX_ID_BYTES, parse_bulk
from beater.delivery import RouterUnavailable
from beater.documents import BadDocuments, DocumentLimits, TooManyDocuments
from beater.engine import EngineUnavailable
from beater.ingest import BulkResource, DocResource, IngestRoot, UnreadableBody, gunzip
from beater.pipeline import BISECTIONS, Counts, Overloaded, Pipeline, UnreadableDocuments
from estrom.health import Healthz, add_health
from estrom.metrics import BeaterMetrics
from estrom.tokens import ANONYMOUS


def ndjson(*lines) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


def outcome(items) -> list[tuple]:
    return [(item.action, item.index, item.status, item.document) for item in items]


def test_index_and_create_are_taken_with_the_index_of_the_path_or_their_own():
    items = parse_bulk(
        ndjson({"index": {}}, {"n": 1}, {"create": {"_index": "other", "_id": "a1"}}, {"n": 2}), "logs"
    )
    assert outcome(items) == [("index", "logs", 0, {"n": 1}), ("create", "other", 0, {"n": 2})]
    assert items[1].id == "a1"
    assert len(items[0].id) == 32  # made here, as the engine would


def test_each_bad_item_is_refused_on_its_own_and_the_pairs_stay_in_step():
    body = ndjson(
        {"index": {}},
        b"{not json",
        {"delete": {"_id": "1"}},  # no source line follows a delete
        {"update": {"_id": "2"}},
        {"doc": {"n": 0}},
        b'{"index": ',  # an action line that is not JSON: a source line is taken to follow
        {"n": 0},
        {"index": {"_index": "Upper"}},
        {"n": 0},
        {"index": {"_id": {"x": 1}}},
        {"n": 0},
        {"index": {"_id": "x" * (MAX_ID_BYTES + 1)}},
        {"n": 0},
        {"index": {}},
        [1, 2],
        {"index": {}},
        {"estrom_query": "x"},
        {"index": {}},
        b'{"bad": "\xff"}',
        {"frobnicate": {}},
        {"n": 0},
        {"index": {}},
        {"n": 1},
    )
    items = parse_bulk(body, "logs")
    assert [item.status for item in items] == [400] * 11 + [0]
    assert items[-1].document == {"n": 1}
    reasons = [item.reason for item in items]
    assert "line 2: not valid JSON" in reasons[0]
    assert "does not support 'delete'" in reasons[1] and "does not support 'update'" in reasons[2]
    assert [item.action for item in items[1:3]] == ["delete", "update"]
    assert "malformed action line" in reasons[3]
    assert "must be lowercase" in reasons[4] and items[4].error_type == "invalid_index_name_exception"
    assert "_id must be a non-empty string" in reasons[5]
    assert f"longer than {MAX_ID_BYTES} bytes" in reasons[6]
    assert "a document is a JSON object, not list" in reasons[7]
    assert "field 'estrom_query' is reserved" in reasons[8]
    assert "line 19: not UTF-8" in reasons[9]
    assert "unknown action 'frobnicate'" in reasons[10]


def test_without_an_index_in_the_path_or_the_action_the_item_is_refused():
    (item,) = parse_bulk(ndjson({"index": {}}, {"n": 1}), None)
    assert (item.status, item.error_type) == (400, "invalid_index_name_exception")
    (item,) = parse_bulk(ndjson({"index": {"_index": "secret"}}, {"n": 1}), None, patterns=("logs-*",))
    assert "not served here" in item.reason


def test_line_ends_blank_lines_and_a_missing_source_line():
    items = parse_bulk(b'\r\n{"index": {}}\r\n{"n": 1}\r\n\n{"index": {}}', "logs")
    assert outcome(items)[0] == ("index", "logs", 0, {"n": 1})
    assert items[1].status == 400 and "the document is missing" in items[1].reason


def test_shippers_metadata_the_engine_ignores_here_is_accepted():
    # rsyslog's omelasticsearch sends a _type, Logstash a routing or pipeline.
    (item,) = parse_bulk(ndjson({"index": {"_type": "events", "routing": "r", "_id": 7}}, {"n": 1}), "logs")
    assert (item.status, item.id) == (0, "7")


def test_a_body_that_is_no_bulk_body_is_refused_whole():
    with pytest.raises(BadDocuments, match="the body is empty"):
        parse_bulk(b"\n \n", "logs")
    with pytest.raises(TooManyDocuments, match="more than 2 items"):
        parse_bulk(ndjson(*[{"index": {}}, {"n": 1}] * 3), "logs", DocumentLimits(max_documents=2))


def test_a_document_larger_than_the_router_carries_is_refused_as_an_item():
    items = parse_bulk(
        ndjson({"index": {}}, {"s": "x" * 200}, {"index": {}}, {"n": 1}),
        "logs",
        DocumentLimits(max_encoded_bytes=100),
    )
    assert [item.status for item in items] == [400, 0]
    assert "bytes as published" in items[0].reason


def test_gzip_bodies_are_read_whole_and_bounded():
    assert gunzip(gzip.compress(b"abc") + gzip.compress(b"def"), 100) == b"abcdef"
    bomb = gzip.compress(b"\0" * 10_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(UnreadableBody) as refused:
        gunzip(bomb, 1_000_000)
    assert refused.value.status == 413
    with pytest.raises(UnreadableBody) as refused:
        gunzip(gzip.compress(b"abc" * 1000)[:-20], 10_000)
    assert refused.value.status == 400 and "ends before" in str(refused.value)
    with pytest.raises(UnreadableBody) as refused:
        gunzip(b"not gzip at all", 100)
    assert refused.value.status == 400


class _Beater:
    """Beater's ingest as the bulk endpoint sees it: one outcome per index (Overloaded and
    RouterUnavailable raised at once, as Pipeline.submit does; anything else, every document
    refused with it)."""

    index_patterns = ("*",)
    document_limits = DocumentLimits()

    def __init__(self, outcomes: dict[str, Exception | None]):
        self.outcomes = outcomes
        self.metrics = BeaterMetrics()

    async def ingest(self, received):
        error, counts = self.outcomes[received.index], Counts()
        if isinstance(error, (Overloaded, RouterUnavailable)):
            raise error
        if error is None:
            counts["accepted"] = len(received.documents)
        else:
            counts.refused = dict.fromkeys(range(len(received.documents)), error)
        return counts


def bulk(outcomes: dict[str, Exception | None], body: bytes, beater=None) -> tuple[int, dict, DummyRequest]:
    request = DummyRequest([])
    request.method = b"POST"
    request.body_too_large = False
    request.principal = ANONYMOUS  # as GuardedSite makes it without a token file
    request.content = BytesIO(body)
    request.channel = SimpleNamespace(
        site=SimpleNamespace(max_body_bytes=10_000_000, off_reactor_bytes=256 * 1024)
    )
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/x-ndjson"])
    assert BulkResource(beater or _Beater(outcomes), None).render(request) == NOT_DONE_YET
    assert request.finished
    return request.responseCode, json.loads(b"".join(request.written)), request


@pytest.mark.parametrize(
    "error, status",
    [(Overloaded("full"), 429), (RouterUnavailable("gone"), 503), (EngineUnavailable("down"), 503)],
)
def test_when_no_item_could_be_taken_for_a_reason_a_retry_mends_the_request_gets_that_status(error, status):
    # syslog-ng's elasticsearch-http and rsyslog read only the status: a 200 would lose them.
    body = ndjson({"index": {"_index": "a"}}, {"n": 1}, {"index": {"_index": "b"}}, {"n": 2})
    code, answer, request = bulk({"a": error, "b": error}, body)
    assert code == status and "error" in answer
    assert request.responseHeaders.getRawHeaders(b"retry-after") == [b"1"]


def test_items_of_an_index_that_failed_are_answered_apart_from_the_others():
    body = ndjson(
        {"index": {"_index": "a"}}, {"n": 1}, {"index": {"_index": "b"}}, {"n": 2}, {"index": {}}, {"n": 3}
    )
    code, answer, _ = bulk({"a": None, "b": RouterUnavailable("gone")}, body)
    assert code == 200 and answer["errors"] is True
    results = [item["index"] for item in answer["items"]]
    assert [result["status"] for result in results] == [201, 503, 400]
    assert results[1]["error"]["reason"] == "gone"


class _Refusing(_Beater):
    """A real Pipeline before an engine that refuses any delivery holding a document with
    ``"bad": true``: naming them (as the store's bulk answer does) if ``named``, else not (as a
    percolation fails whole). Deliveries counted."""

    def __init__(self, named: bool = False):
        super().__init__({})
        self.calls, self.named = 0, named
        self.pipeline = Pipeline(self._deliver)

    async def _deliver(self, index, documents, requests, ids, named):
        self.calls += 1
        bad = {slot: "bad" for slot, document in enumerate(documents) if document.get("bad")}
        if bad:
            raise UnreadableDocuments("mapper_parsing_exception: bad", bad if self.named else None)
        return {}

    def ingest(self, received):
        return self.pipeline.submit(received)


def bulk_into(beater, body) -> list[int]:
    _, answer, _ = bulk({}, body, beater)
    return [item["index"]["status"] for item in answer["items"]]


def test_documents_the_engine_refuses_are_found_by_halves_and_refused_alone():
    beater = _Refusing()
    lines = [line for n in range(64) for line in ({"index": {"_index": "a"}}, {"n": n, "bad": n in (5, 40)})]
    statuses = bulk_into(beater, ndjson(*lines))
    assert [n for n, status in enumerate(statuses) if status != 201] == [5, 40]
    assert all(statuses[n] == 400 for n in (5, 40))
    assert beater.calls <= 1 + 2 * 2 * 6  # two halvings per bad document, log2(64) deep


def test_documents_the_engine_names_are_refused_alone_at_the_cost_of_one_more_delivery():
    beater = _Refusing(named=True)
    lines = [line for n in range(64) for line in ({"index": {"_index": "a"}}, {"n": n, "bad": n in (5, 40)})]
    _, answer, _ = bulk({}, ndjson(*lines), beater)
    results = [item["index"] for item in answer["items"]]
    assert [n for n, result in enumerate(results) if result["status"] != 201] == [5, 40]
    assert results[5]["error"] == {
        "type": "mapper_parsing_exception",
        "reason": "the search engine refused it: bad",
    }
    assert beater.calls == 2


def test_a_request_of_many_refused_documents_costs_the_engine_a_bounded_number_of_tries():
    beater = _Refusing()
    lines = [line for n in range(2000) for line in ({"index": {"_index": "a"}}, {"n": n, "bad": True})]
    statuses = bulk_into(beater, ndjson(*lines))
    assert statuses == [400] * 2000
    assert beater.calls <= 1 + 2 * BISECTIONS


@pytest.mark.parametrize(
    "path, kind, index",
    [
        ("metrics/_bulk", BulkResource, "metrics"),
        ("healthz/_doc/1", DocResource, "healthz"),
        ("readyz/_create/1", DocResource, "readyz"),
        ("api/_bulk", BulkResource, "api"),
        ("_bulk", BulkResource, None),
        ("healthz", Healthz, None),
        ("healthz/", Healthz, None),
    ],
)
def test_an_index_named_as_one_of_beaters_paths_is_reached_through_the_engines_endpoints(path, kind, index):
    root = IngestRoot(SimpleNamespace())
    add_health(root, {})  # as estrom.service serves it, with /metrics
    root.putChild(b"metrics", Resource())
    resource = getChildForRequest(root, DummyRequest(path.encode().split(b"/")))
    assert isinstance(resource, kind)
    assert getattr(resource, "index", None) == index
