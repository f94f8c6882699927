"""OpenTelemetry logs: POST /v1/logs (OTLP/HTTP). Unit tests of the mapping (beater.otlp), and
system tests: the OpenTelemetry Python SDK's exporter wired to `logging` sends 10,000 records,
each arrives once at a stream and in the engine; JSON with partial success; bad bodies."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
import pytest_twisted
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from twisted.internet.utils import getProcessOutputAndValue

from beater import otlp
from estrom.clients import HttpStream, eventually, http

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_796_000_000.0

# One resource, one scope, three records, as OTLP/JSON writes them.
REQUEST = {
    "resourceLogs": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "shop"}},
                    {"key": "data_stream.dataset", "value": {"stringValue": "nginx"}},
                ]
            },
            "scopeLogs": [
                {
                    "scope": {"name": "checkout", "version": "1.2"},
                    "logRecords": [
                        {
                            "timeUnixNano": "1796000000123456789",
                            "severityNumber": 17,
                            "body": {"stringValue": "card declined"},
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "attributes": [
                                {"key": "http.status_code", "value": {"intValue": "402"}},
                                {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
                            ],
                        },
                        {
                            "observedTimeUnixNano": "1796000001000000000",
                            "severityText": "Warning",
                            "severityNumber": 13,
                            "body": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}},
                            "attributes": [{"key": "estrom.index", "value": {"stringValue": "mine"}}],
                        },
                        {"attributes": [{"key": "data_stream.namespace", "value": {"stringValue": "prod"}}]},
                    ],
                }
            ],
        }
    ]
}


def test_records_become_documents_as_the_elasticsearch_exporter_writes_them_in_otel_mode():
    request = otlp.parse(json.dumps(REQUEST).encode(), otlp.JSON)
    records = otlp.documents(request, otlp.DEFAULT_INDEX, NOW)
    assert sorted(records.by_index) == ["logs-nginx-default", "logs-nginx-prod", "mine"]
    [first] = records.by_index["logs-nginx-default"]
    assert first == {
        "@timestamp": "2026-11-30T00:53:20.123456789Z",
        "message": "card declined",
        "level": "ERROR",
        "severity_number": 17,
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "attributes": {"http.status_code": 402, "tags": ["a"]},
        "resource": {"attributes": {"service.name": "shop", "data_stream.dataset": "nginx"}},
        "scope": {"name": "checkout", "version": "1.2"},
    }
    [second] = records.by_index["mine"]  # estrom.index wins
    assert second["@timestamp"] == second["observed_timestamp"] == "2026-11-30T00:53:21.000000000Z"
    assert second["level"] == "Warning" and second["message"] == '{"k": true}'
    [third] = records.by_index["logs-nginx-prod"]
    assert third["@timestamp"] == otlp.iso(int(NOW * 1e9)) and "level" not in third and "message" not in third
    # The same request as protobuf reads the same.
    again = otlp.documents(otlp.parse(request.SerializeToString(), otlp.PROTOBUF), otlp.DEFAULT_INDEX, NOW)
    assert again.by_index == records.by_index


def test_without_data_stream_attributes_the_default_routing_and_a_fixed_index():
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "x"
    assert list(otlp.documents(request, otlp.DEFAULT_INDEX, NOW).by_index) == ["logs-generic-default"]
    assert list(otlp.documents(request, "otel", NOW).by_index) == ["otel"]


@pytest.mark.parametrize(
    "body, kind, says",
    [
        (b"\xff\xff\xff", otlp.PROTOBUF, "protobuf"),
        (b"[1]", otlp.JSON, "not an object"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}', otlp.JSON, "hex"),
        (b'{"resourceLogs": 5}', otlp.JSON, "JSON"),
    ],
)
def test_a_body_that_is_not_a_request_is_named(body, kind, says):
    with pytest.raises(otlp.BadOtlp, match=says):
        otlp.parse(body, kind)


def test_the_answer_says_what_was_rejected_in_the_requests_encoding():
    answer = ExportLogsServiceResponse.FromString(otlp.answer(2, "why", otlp.PROTOBUF))
    assert answer.partial_success.rejected_log_records == 2 and answer.partial_success.error_message == "why"
    assert json.loads(otlp.answer(0, "", otlp.JSON)) == {}


@pytest.mark.parametrize("stack", ["opensearch"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_an_application_logging_through_the_opentelemetry_sdk_reaches_a_stream_once(stored, index):
    stream = await HttpStream.open(stored.tailor_url, i=index, q="resource.attributes.service.name:shop")
    try:
        await stream.wait_for_head()
        script = str(ROOT / "tests" / "clients" / "otel_logging.py")
        out, err, code = await getProcessOutputAndValue(
            sys.executable, [script, stored.beater_url, index, "10000"]
        )
        assert code == 0 and json.loads(out.decode().splitlines()[-1])["flushed"], err.decode()[-3000:]
        hits = await stream.wait_for_hits(10_000, timeout=120)
        numbers = sorted(hit["_source"]["attributes"]["n"] for hit in hits)
        assert numbers == list(range(10_000)), f"{len(numbers)} hits, {len(set(numbers))} distinct"
        first = next(hit["_source"] for hit in hits if hit["_source"]["attributes"]["n"] == 0)
        assert first["message"] == "line 0" and first["level"] == "ERROR"
        assert first["scope"]["name"] == "shop" and first["@timestamp"].endswith("Z")

        async def stored_all() -> bool:
            await http.post(f"{stored.engine_url}/{index}/_refresh")
            answer = await http.get(f"{stored.engine_url}/{index}/_count")
            return (await answer.json()).get("count") == 10_000

        await eventually(stored_all, what="the 10,000 records in the engine")
    finally:
        stream.close()


@pytest.mark.parametrize("stack", ["opensearch"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_json_gzip_with_a_record_for_an_index_not_served_is_a_partial_success(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="message:kept")
    try:
        await stream.wait_for_head()
        body = {
            "resourceLogs": [
                {
                    "scopeLogs": [
                        {
                            "logRecords": [
                                {
                                    "body": {"stringValue": "kept"},
                                    "attributes": [{"key": "estrom.index", "value": {"stringValue": index}}],
                                },
                                {
                                    "body": {"stringValue": "refused"},
                                    "attributes": [
                                        {"key": "estrom.index", "value": {"stringValue": "Bad Index"}}
                                    ],
                                },
                            ]
                        }
                    ]
                }
            ]
        }
        response = await http.post(
            f"{stack.beater_url}/v1/logs",
            data=gzip.compress(json.dumps(body).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.code == 200
        answer = await response.json()
        assert answer["partialSuccess"]["rejectedLogRecords"] == "1"
        assert "Bad Index" in answer["partialSuccess"]["errorMessage"]
        assert [hit["_source"]["message"] for hit in await stream.wait_for_hits(1)] == ["kept"]
        for data, content_type, status in [
            (b"\xff\xff", otlp.PROTOBUF, 422),
            (b"{}", "text/plain", 415),
        ]:
            response = await http.post(
                f"{stack.beater_url}/v1/logs", data=data, headers={"Content-Type": content_type}
            )
            assert response.code == status and "error" in await response.json()
    finally:
        stream.close()
