"""OpenTelemetry logs: ``POST /v1/logs`` (OTLP/HTTP), protobuf or JSON, gzipped or not.

Each log record becomes a document, as the OpenTelemetry Collector's Elasticsearch exporter
writes one in its ``otel`` mapping mode (attributes under ``attributes``, ``resource.attributes``
and ``scope.attributes``, their dotted names kept as keys):

- ``@timestamp``: the record's time (else when it was observed, else now), ISO 8601 to the
  nanosecond; ``observed_timestamp`` likewise when given;
- ``message``: the body (a string as it is; another value as JSON text);
- ``level``: ``severityText``, else the name of ``severityNumber``'s range (``INFO``,
  ``ERROR``...); ``severity_number`` as given;
- ``trace_id``, ``span_id`` (hex), ``event_name``, ``scope.name``, ``scope.version``.

A record goes to the index its attribute ``estrom.index`` names (the record's, else its
scope's, else its resource's), else to ``ESTROM_OTLP_INDEX`` with ``{dataset}`` and
``{namespace}`` filled in from ``data_stream.dataset`` and ``data_stream.namespace`` (the same
order; ``generic`` and ``default`` when absent): Elastic's data stream routing,
``logs-generic-default`` by default. Decoded by the ``opentelemetry-proto`` package's messages.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
INDEX_ATTRIBUTE = "estrom.index"
DEFAULT_INDEX = "logs-{dataset}-{namespace}"
# severityNumber ranges (the OpenTelemetry logs data model): 1-4 TRACE ... 21-24 FATAL.
_SEVERITIES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_DEPTH = 64  # of an AnyValue: deeper values are cut (Beater refuses deeper documents anyway)


class BadOtlp(ValueError):
    """A body that is not an ExportLogsServiceRequest in the encoding it says."""


@dataclass
class Records:
    """A request's log records as documents, by index, and those refused with why."""

    by_index: dict[str, list[dict]] = field(default_factory=dict)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < 3 and reason not in self.reasons:
            self.reasons.append(reason)


def parse(body: bytes, content_type: str) -> ExportLogsServiceRequest:
    """The request in ``body``; BadOtlp says why it is not one."""
    request = ExportLogsServiceRequest()
    if content_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as e:
            raise BadOtlp(f"the body is not an OTLP ExportLogsServiceRequest (protobuf): {e}") from None
        return request
    try:
        value = json.loads(body)
    except ValueError as e:
        raise BadOtlp(f"the body is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise BadOtlp("the body is not an OTLP ExportLogsServiceRequest (JSON): not an object")
    # OTLP/JSON writes trace and span IDs in hex, where protobuf's JSON mapping has base64.
    ids = _take_hex_ids(value)
    try:
        json_format.ParseDict(value, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as e:
        raise BadOtlp(f"the body is not an OTLP ExportLogsServiceRequest (JSON): {str(e)[:300]}") from None
    for (r, s, l), (trace_id, span_id) in ids.items():
        record = request.resource_logs[r].scope_logs[s].log_records[l]
        try:
            record.trace_id, record.span_id = bytes.fromhex(trace_id), bytes.fromhex(span_id)
        except ValueError:
            raise BadOtlp("traceId and spanId are hex in OTLP/JSON") from None
    return request


def _take_hex_ids(value: dict) -> dict[tuple[int, int, int], tuple[str, str]]:
    ids = {}
    for r, resource in enumerate(_list(value.get("resourceLogs", value.get("resource_logs")))):
        for s, scope in enumerate(_list(resource.get("scopeLogs", resource.get("scope_logs")))):
            for n, record in enumerate(_list(scope.get("logRecords", scope.get("log_records")))):
                trace = record.pop("traceId", record.pop("trace_id", "")) or ""
                span = record.pop("spanId", record.pop("span_id", "")) or ""
                if not isinstance(trace, str) or not isinstance(span, str):
                    raise BadOtlp("traceId and spanId are hex strings in OTLP/JSON")
                if trace or span:
                    ids[(r, s, n)] = (trace, span)
    return ids


def _list(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def documents(request: ExportLogsServiceRequest, index_template: str, now: float) -> Records:
    """Each log record of ``request`` as a document, by the index it goes to."""
    records = Records()
    for resource_logs in request.resource_logs:
        resource = _attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = _attributes(scope_logs.scope.attributes)
            for record in scope_logs.log_records:
                attributes = _attributes(record.attributes)
                index = _index(index_template, attributes, scope, resource)
                if index is None:
                    records.reject(f"'{INDEX_ATTRIBUTE}' must be a string")
                    continue
                document = _document(record, attributes, now)
                if resource:
                    document["resource"] = {"attributes": resource}
                if scope_logs.scope.name or scope_logs.scope.version or scope:
                    document["scope"] = {
                        key: value
                        for key, value in (
                            ("name", scope_logs.scope.name),
                            ("version", scope_logs.scope.version),
                            ("attributes", scope),
                        )
                        if value
                    }
                records.by_index.setdefault(index, []).append(document)
    return records


def _document(record: Any, attributes: dict[str, Any], now: float) -> dict[str, Any]:
    document: dict[str, Any] = {}
    nanos = record.time_unix_nano or record.observed_time_unix_nano or int(now * 1e9)
    document["@timestamp"] = iso(nanos)
    if record.observed_time_unix_nano:
        document["observed_timestamp"] = iso(record.observed_time_unix_nano)
    if record.HasField("body"):
        body = _value(record.body, 0)
        document["message"] = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    level = record.severity_text or _severity_name(record.severity_number)
    if level:
        document["level"] = level
    if record.severity_number:
        document["severity_number"] = int(record.severity_number)
    if record.trace_id:
        document["trace_id"] = record.trace_id.hex()
    if record.span_id:
        document["span_id"] = record.span_id.hex()
    if record.event_name:
        document["event_name"] = record.event_name
    if attributes:
        document["attributes"] = attributes
    return document


def _severity_name(number: int) -> str | None:
    return _SEVERITIES[(number - 1) // 4] if 1 <= number <= 24 else None


def iso(nanos: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC, to the nanosecond."""
    seconds, rest = divmod(int(nanos), 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value, 0) for pair in pairs}


def _value(value: AnyValue, depth: int) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind in ("array_value", "kvlist_value") and depth >= _DEPTH:
        return None
    if kind == "array_value":
        return [_value(item, depth + 1) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {pair.key: _value(pair.value, depth + 1) for pair in value.kvlist_value.values}
    return getattr(value, kind)


def _index(template: str, *levels: dict[str, Any]) -> str | None:
    """``estrom.index`` from the first of ``levels`` that has it, else ``template`` filled in
    from ``data_stream.dataset`` and ``data_stream.namespace``; None if estrom.index is not text."""
    for attributes in levels:
        if INDEX_ATTRIBUTE in attributes:
            named = attributes[INDEX_ATTRIBUTE]
            return named if isinstance(named, str) else None

    def first(name: str, default: str) -> str:
        for attributes in levels:
            found = attributes.get(name)
            if isinstance(found, str) and found:
                return found
        return default

    return template.format(
        dataset=first("data_stream.dataset", "generic"), namespace=first("data_stream.namespace", "default")
    )


def answer(rejected: int, message: str, content_type: str) -> bytes:
    """The OTLP answer: an ExportLogsServiceResponse, its partial success when records were
    rejected, in the request's encoding."""
    response = ExportLogsServiceResponse()
    if rejected:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
    if content_type == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()
