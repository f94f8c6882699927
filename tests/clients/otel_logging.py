"""An application logging straight to estrom: Python's `logging`, through the OpenTelemetry
SDK's LoggingHandler and its OTLP/HTTP log exporter (protobuf, gzip), to Beater's /v1/logs.

    python otel_logging.py BEATER_URL INDEX COUNT

Logs COUNT lines, "line N" (every tenth an error, every tenth but one a warning), each with the
attribute n; the resource says service.name "shop" and estrom.index INDEX. Exits once all are
exported (shutdown flushes), printing what the exporter said of the last batch.
"""

from __future__ import annotations

import json
import logging
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource


def main() -> None:
    url, index, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    provider = LoggerProvider(resource=Resource.create({"service.name": "shop", "estrom.index": index}))
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip, timeout=30)
    # A queue for every line: past its default 2,048 the SDK drops records (this loop is faster
    # than export).
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, max_queue_size=count, max_export_batch_size=512)
    )
    logger = logging.getLogger("shop")
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    for n in range(count):
        level = logging.ERROR if n % 10 == 0 else logging.WARNING if n % 10 == 1 else logging.INFO
        logger.log(level, "line %d", n, extra={"n": n})
    ok = provider.force_flush(60_000)
    provider.shutdown()
    print(json.dumps({"flushed": ok}))


if __name__ == "__main__":
    main()
