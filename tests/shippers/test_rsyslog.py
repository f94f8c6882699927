"""rsyslog's omelasticsearch (Debian's rsyslog-elasticsearch) ships to Beater's ``_bulk``."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from tests.shippers import UNPACKED, Shipper, free_port, ship

COUNT = 10_000

# How a shipper talks to Beater does not depend on the engine behind it: one engine is enough.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)

CONFIG = """
global(workDirectory="{workdir}")
module(load="imtcp")
module(load="omelasticsearch")
template(name="estrom-doc" type="list" option.jsonf="on") {{
  property(outname="message" name="msg" format="jsonf")
  property(outname="program" name="programname" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="ship")
ruleset(name="ship") {{
  action(type="omelasticsearch" server="127.0.0.1" serverport="{beater_port}" {credentials}
         searchIndex="{index}" template="estrom-doc" bulkmode="on" maxbytes="1m"
         retryfailures="on" errorfile="{workdir}/errors.json"
         queue.type="linkedList" queue.size="100000" queue.dequeueBatchSize="500"
         action.resumeRetryCount="-1" action.resumeInterval="1")
}}
"""


def rsyslogd(workdir: Path, beater_port: int, index: str, credentials: str = "") -> Shipper:
    """rsyslogd shipping what it reads on a free port to Beater's _bulk; ``credentials``:
    omelasticsearch's ``uid="..." pwd="..."``, if any."""
    port = free_port()
    config = workdir / "rsyslog.conf"
    config.write_text(
        CONFIG.format(
            workdir=workdir, port=port, beater_port=beater_port, index=index, credentials=credentials
        )
    )
    modules = UNPACKED / "usr/lib/x86_64-linux-gnu/rsyslog"
    argv = [
        str(UNPACKED / "usr/sbin/rsyslogd"),
        "-n",
        "-f",
        str(config),
        "-i",
        str(workdir / "pid"),
        "-M",
        str(modules),
    ]
    return Shipper(workdir, argv, port)


@pytest.fixture
def rsyslog(stack, index, tmp_path):
    shipper = rsyslogd(tmp_path, stack.ports.beater, index)
    yield shipper
    shipper.stop()


@pytest_twisted.ensureDeferred
async def test_rsyslog_ships_every_line_once_through_bulk(stored, index, rsyslog):
    await ship(stored, index, rsyslog, COUNT)
    assert not (rsyslog.workdir / "errors.json").exists()  # omelasticsearch's failed items
