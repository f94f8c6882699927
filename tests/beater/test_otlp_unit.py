"""OpenTelemetry logs: POST /v1/logs (OTLP/HTTP). The mapping (beater.otlp): records as
documents and their indexes, bodies that are not a request, the answer in the request's encoding."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from beater import otlp

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
