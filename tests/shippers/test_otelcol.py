"""The OpenTelemetry Collector (built by ``make shippers`` from tests/shippers/otelcol: contrib
v0.156.0, the newest release whose elasticsearch exporter the Go module proxy serves whole): its
``filelog`` receiver reads syslog lines from a file the test writes, and sends them on with the
``otlphttp`` exporter to ``/v1/logs``, or with contrib's ``elasticsearch`` exporter to ``_bulk``
(otel mapping mode, a data stream)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytest_twisted

from estrom.clients import get
from tests.shippers import PROGRAM, ROOT, FileShipper, ship

COUNT = 10_000
OTELCOL = ROOT / ".shippers" / "bin" / "otelcol"

pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)

# As a README would show it: the file read from its start, each line parsed into host, program
# and message, the message made the body.
RECEIVER = """
receivers:
  filelog:
    include: [{path}]
    start_at: beginning
    poll_interval: 50ms
    operators:
      - type: regex_parser
        regex: '^<\\d+>\\w+ +\\d+ [\\d:]+ (?P<host>\\S+) (?P<program>[^:]+): (?P<message>.*)$'
      - type: move
        from: attributes.message
        to: body
{extra}
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [{exporter}]
"""

# OTLP/HTTP to Beater: the index from the attribute estrom.index.
OTLPHTTP = """      - type: add
        field: attributes["estrom.index"]
        value: {index}
exporters:
  otlphttp:
    endpoint: {beater}
    compression: gzip
"""

# contrib's elasticsearch exporter, as for an Elasticsearch 8 cluster: documents routed by
# data_stream.dataset to logs-<dataset>.otel-default, in the default (otel) mapping mode.
ELASTICSEARCH = """      - type: add
        field: attributes["data_stream.dataset"]
        value: {dataset}
exporters:
  elasticsearch:
    endpoints: [{beater}]
    sending_queue:
      enabled: true
      batch:
        flush_timeout: 200ms
"""


def collector(workdir: Path, config: str) -> FileShipper:
    (workdir / "otelcol.yaml").write_text(config.replace("{path}", str(workdir / "lines.log")))
    return FileShipper(workdir, [str(OTELCOL), "--config", str(workdir / "otelcol.yaml")])


def configured(exporter: str, extra: str) -> str:
    return RECEIVER.replace("{extra}", extra.rstrip("\n")).replace("{exporter}", exporter)


@pytest_twisted.ensureDeferred
async def test_otlphttp_exporter_sends_every_line_once_to_v1_logs(stored, index, tmp_path):
    config = configured("otlphttp", OTLPHTTP.format(index=index, beater=stored.beater_url))
    shipper = collector(tmp_path, config)
    try:
        await ship(
            stored,
            index,
            shipper,
            COUNT,
            query=f"attributes.program:{PROGRAM}",
            fields=lambda source: (source["message"], source["attributes"]["host"]),
        )
    finally:
        shipper.stop()


@pytest_twisted.ensureDeferred
async def test_elasticsearch_exporter_sends_every_line_once_to_a_data_stream(stored, index, tmp_path):
    dataset = re.sub(r"[^a-z0-9]+", ".", index)[:80]
    name = f"logs-{dataset}.otel-default"
    config = configured("elasticsearch", ELASTICSEARCH.format(dataset=dataset, beater=stored.beater_url))
    shipper = collector(tmp_path, config)
    try:
        await ship(
            stored,
            name,
            shipper,
            COUNT,
            query=f"attributes.program:{PROGRAM}",
            fields=lambda source: (source["body"]["text"], source["attributes"]["host"]),
        )
    finally:
        shipper.stop()
    status, answer = await get(f"{stored.engine_url}/_data_stream/{name}")  # stored in one
    assert status == 200 and [stream["name"] for stream in answer["data_streams"]] == [name]
