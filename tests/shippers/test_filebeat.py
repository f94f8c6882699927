"""Filebeat OSS 7.17.29 (built by ``make shippers`` from the Go module proxy): its ``filestream``
input reads syslog lines from a file the test writes, a ``dissect`` processor parses them, and
its ``elasticsearch`` output sends them to Beater's ``_bulk``, after the probes it makes first
(``_license``, ``_xpack``, its index template: beater.probes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from tests.shippers import PROGRAM, ROOT, FileShipper, ship

COUNT = 10_000
FILEBEAT = ROOT / ".shippers" / "bin" / "filebeat"

pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)

# As a README would show it: the output's index is the stream's, with the template name and
# pattern Filebeat asks for when the index is set; ILM and the template left as they are (Beater
# answers the probes). One worker and one batch in flight keep the lines in order.
CONFIG = """
filebeat.inputs:
  - type: filestream
    id: lines
    paths: [{path}]
    prospector.scanner.check_interval: 100ms
processors:
  - dissect:
      tokenizer: "<%{{pri}}>%{{month}} %{{day}} %{{time}} %{{host}} %{{program}}: %{{msg}}"
      field: message
      target_prefix: syslog
output.elasticsearch:
  hosts: ["{beater}"]
  index: "{index}"
  bulk_max_size: 1000
setup.template.name: "{index}"
setup.template.pattern: "{index}*"
path.data: {data}
path.logs: {data}/logs
logging.level: warning
logging.to_stderr: true
"""


def filebeat(workdir: Path, beater: str, index: str) -> FileShipper:
    config = workdir / "filebeat.yml"
    path, data = workdir / "lines.log", workdir / "data"
    config.write_text(CONFIG.format(path=path, beater=beater, index=index, data=data))
    argv = [str(FILEBEAT), "-e", "--strict.perms=false", "-c", str(config), "--path.home", str(workdir)]
    return FileShipper(workdir, argv)


@pytest_twisted.ensureDeferred
async def test_filebeat_sends_every_line_once(stored, index, tmp_path):
    shipper = filebeat(tmp_path, stored.beater_url, index)
    try:
        await ship(
            stored,
            index,
            shipper,
            COUNT,
            query=f"syslog.program:{PROGRAM}",
            fields=lambda source: (source["syslog"]["msg"], source["syslog"]["host"]),
        )
    finally:
        shipper.stop()
