"""OpenTelemetry logs: POST /v1/logs (OTLP/HTTP) on the running system: the OpenTelemetry
Python SDK's exporter wired to `logging` sends 10,000 records, each arrives once at a stream and
in the engine; JSON with partial success; bad bodies."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from beater import otlp
from estrom.clients import HttpStream, eventually, http

ROOT = Path(__file__).resolve().parents[2]


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
