"""Benthos v4.60.0 (built by ``make shippers`` from the Go module proxy): lines read over TCP,
made into documents, and sent in NDJSON batches by its ``http_client`` output."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.shippers import ROOT, Shipper, free_port, ship

COUNT = 10_000
BENTHOS = ROOT / ".shippers" / "bin" / "benthos"

# How a shipper talks to Beater does not depend on the engine behind it: one engine is enough.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)

# As a README would show it: pipeline.threads 1 and max_in_flight 1 keep the lines in order
# (Benthos reorders otherwise); the http_client output retries whatever is not 2xx, backing off
# on 429. Its core build has no metrics to say what it has sent: in order, the last line
# arriving says all were sent.
CONFIG = """
http:
  enabled: false
input:
  socket_server:
    network: tcp
    address: 127.0.0.1:{port}
    scanner:
      lines: {{}}
pipeline:
  threads: 1
  processors:
    - mapping: |
        let line = content().string()
        root.message = $line.re_replace_all("^.*: ", "")
        root.program = "estromtest"
        root.host = $line.split(" ").index(3)
output:
  http_client:
    url: {docs}
    verb: POST
    headers:
      Content-Type: application/x-ndjson
    max_in_flight: 1
    batching:
      count: 500
      period: 200ms
      processors:
        - archive:
            format: lines
logger:
  level: WARN
"""


@pytest.fixture
def benthos(stack, index, tmp_path):
    port = free_port()
    config = tmp_path / "benthos.yaml"
    docs = f"{stack.beater_url}/api/v0.1/docs/{index}"
    config.write_text(CONFIG.format(port=port, docs=docs))
    shipper = Shipper(tmp_path, [str(BENTHOS), "-c", str(config)], port)
    yield shipper
    shipper.stop()


@pytest_twisted.ensureDeferred
async def test_benthos_ships_every_line_once(stored, index, benthos):
    await ship(stored, index, benthos, COUNT)
