"""syslog-ng (Debian's syslog-ng-core and syslog-ng-mod-http 3.38): its http() destination in each
body shape, to the docs API, and its elasticsearch-http() destination, to ``_bulk``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import pytest_twisted

from estrom.clients import HttpStream
from tests.shippers import LIBRARIES, PROGRAM, UNPACKED, Shipper, free_port, ship

COUNT = 10_000

# How a shipper talks to Beater does not depend on the engine behind it: one engine is enough.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)
DOCUMENT = "$(format-json message=${MESSAGE} program=${PROGRAM} host=${HOST})"

# Each destination as a README would show it; DOCS_URL, BULK_URL and INDEX are filled in.
DESTINATIONS = {
    # One document per request: as many requests at once as workers.
    "object": f"""http(url("DOCS_URL") method("POST") headers("Content-Type: application/json")
                  body("{DOCUMENT}") workers(32))""",
    "array": f"""http(url("DOCS_URL") method("POST") headers("Content-Type: application/json")
                  body-prefix("[") delimiter(",") body-suffix("]") body("{DOCUMENT}")
                  batch-lines(500) batch-timeout(200) workers(2))""",
    "ndjson": f"""http(url("DOCS_URL") method("POST") headers("Content-Type: application/x-ndjson")
                  delimiter("\\n") body("{DOCUMENT}") batch-lines(500) batch-timeout(200) workers(2))""",
    "elasticsearch-http": f"""elasticsearch-http(url("BULK_URL") index("INDEX") type("")
                  template("{DOCUMENT}") batch-lines(500) batch-timeout(200) workers(2))""",
}

CONFIG = """@version: 3.38
@include "{scl}/elasticsearch/elastic-http.conf"
options {{ time-reopen(1); keep-hostname(yes); }};
source s_net {{ network(ip(127.0.0.1) port({port}) transport(tcp) log-iw-size(20000)); }};
destination d_estrom {{ {destination}; }};
log {{ source(s_net); destination(d_estrom); flags(flow-control); }};
"""


@pytest.fixture
def syslog_ng(stack, index, tmp_path, request):
    beater = stack.beater_url
    destination = (
        DESTINATIONS[request.param]
        .replace("DOCS_URL", f"{beater}/api/v0.1/docs/{index}")
        .replace("BULK_URL", f"{beater}/_bulk")
        .replace("INDEX", index)
    )
    shipper = _syslog_ng(tmp_path, destination)
    yield shipper
    shipper.stop()


def _syslog_ng(workdir: Path, destination: str) -> Shipper:
    port = free_port()
    config = workdir / "syslog-ng.conf"
    scl = UNPACKED / "usr/share/syslog-ng/include/scl"
    config.write_text(CONFIG.format(scl=scl, port=port, destination=destination))
    argv = [
        str(UNPACKED / "usr/sbin/syslog-ng"),
        *("-F", "-e", "--no-caps", "-f", str(config)),
        f"--module-path={UNPACKED}/usr/lib/syslog-ng/3.38",
        *("-R", str(workdir / "persist"), "-p", str(workdir / "pid"), "-c", str(workdir / "ctl")),
    ]
    return Shipper(workdir, argv, port)


def _stats(shipper: Shipper) -> dict[str, int]:
    """The counters of syslog-ng's http destination (written, dropped, queued, ...)."""
    stats = subprocess.run(
        [str(UNPACKED / "usr/sbin/syslog-ng-ctl"), "stats", "-c", str(shipper.workdir / "ctl")],
        capture_output=True,
        text=True,
        env={"LD_LIBRARY_PATH": LIBRARIES},
        check=True,
    ).stdout
    figures: dict[str, int] = {}
    for line in stats.splitlines():
        fields = line.split(";")
        if len(fields) == 6 and fields[0].startswith("dst.http"):
            figures[fields[4]] = figures.get(fields[4], 0) + int(fields[5])
    return figures


def nothing_queued(shipper: Shipper) -> bool:
    """Whether syslog-ng's destination has written every line and holds none to resend."""
    figures = _stats(shipper)
    return figures.get("queued", 1) == 0 and figures.get("written", 0) == COUNT


@pytest.mark.parametrize("syslog_ng", sorted(DESTINATIONS), indirect=True)
@pytest_twisted.ensureDeferred
async def test_syslog_ng_ships_every_line_once(stored, index, syslog_ng):
    await ship(stored, index, syslog_ng, COUNT, settled=lambda: nothing_queued(syslog_ng))


@pytest.fixture
def syslog_ng_raw(stack, index, tmp_path):
    """syslog-ng's http() sending each line's message as it is: a JSON document, or not."""
    raw = f"""http(url("{stack.beater_url}/api/v0.1/docs/{index}") method("POST")
              headers("Content-Type: application/json") body("${{MESSAGE}}") workers(1))"""
    shipper = _syslog_ng(tmp_path, raw)
    yield shipper
    shipper.stop()


@pytest_twisted.ensureDeferred
async def test_syslog_ng_drops_a_document_that_will_never_be_taken_and_goes_on(stored, index, syslog_ng_raw):
    # Refused with 400, the bad document would be resent forever and hold up every line after it.
    stream = await HttpStream.open(stored.tailor_url, i=index, q="n:*")
    await stream.wait_for_head()
    await syslog_ng_raw.listening()
    lines = [f'{{"n": {n}}}' if n != 2 else "not a document" for n in range(5)]
    await syslog_ng_raw.send([f"<14>Nov 29 03:00:00 shiphost {PROGRAM}: {line}" for line in lines])
    hits = await stream.wait_for_hits(4)
    assert [hit["_source"]["n"] for hit in hits] == [0, 1, 3, 4]
    assert _stats(syslog_ng_raw).get("dropped") == 1
    stream.close()
