"""Real log shippers, unpacked from Debian's packages by ``make shippers``, sending through the
real stack: each gets syslog lines over TCP and ships them as its users would configure it."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from dev.stack import ROOT
from estrom.clients import HttpStream, eventually, get, post

UNPACKED = ROOT / ".shippers" / "root"
LIBRARIES = f"{UNPACKED}/usr/lib/x86_64-linux-gnu:{UNPACKED}/usr/lib/syslog-ng"
PROGRAM = "estromtest"  # the syslog tag of every line sent: the streams' query


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Shipper:
    """A shipper's process, its log, and the TCP port it reads syslog lines on."""

    def __init__(self, workdir: Path, argv: list[str], port: int):
        self.workdir, self.port = workdir, port
        self.log = workdir / "shipper.log"
        env = {**os.environ, "LD_LIBRARY_PATH": LIBRARIES}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)

    async def listening(self) -> None:
        await eventually(
            lambda: self._accepts() or self._died(), timeout=30, what=f"the shipper on {self.port}"
        )
        self._died()

    def _accepts(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def _died(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"the shipper exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}"
            )
        return False

    async def send(self, lines: list[str]) -> None:
        """Write ``lines`` (syslog lines, without their newline) to the shipper's TCP source."""
        protocol = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), Protocol())
        protocol.transport.write("".join(line + "\n" for line in lines).encode())
        protocol.transport.loseConnection()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class FileShipper(Shipper):
    """A shipper that reads the file ``lines.log`` in its workdir, which ``send`` appends to."""

    def __init__(self, workdir: Path, argv: list[str]):
        self.path = workdir / "lines.log"
        self.path.touch()
        super().__init__(workdir, argv, 0)

    async def listening(self) -> None:
        self._died()  # it reads the file from its start, whenever it comes to it

    async def send(self, lines: list[str]) -> None:
        with self.path.open("a") as file:
            file.write("".join(line + "\n" for line in lines))


def syslog_lines(count: int) -> list[str]:
    """RFC 3164 lines from host ``shiphost``, tagged PROGRAM, whose messages are ``seq=<n>``."""
    return [f"<14>Nov 29 03:00:00 shiphost {PROGRAM}: seq={n}" for n in range(count)]


async def ship(
    stack,
    index: str,
    shipper: Shipper,
    count: int,
    settled=None,
    query: str = f"program:{PROGRAM}",
    fields: Callable[[dict], tuple[str, str]] = lambda source: (source["message"], source["host"]),
) -> None:
    """Send ``count`` lines through ``shipper`` with a stream open on ``index`` throughout; each
    must arrive exactly once, as the document the shipper made of it: checked once all have
    arrived and ``settled()``, if given (the shipper has nothing left to send or resend; a
    shipper that keeps lines in order has sent all before the last once it arrives). ``query``
    finds the lines' documents, ``fields`` reads a document's message and host."""
    stream = await HttpStream.open(stack.tailor_url, i=index, q=query)
    await stream.wait_for_head()
    await shipper.listening()
    await shipper.send(syslog_lines(count))

    def seqs() -> list[int]:
        return [int(fields(hit["_source"])[0].strip().removeprefix("seq=")) for hit in stream.hits]

    await eventually(
        lambda: len(set(seqs())) >= count, timeout=180, what=f"{count} lines (have {len(stream.hits)} hits)"
    )
    if settled is not None:
        await eventually(settled, timeout=60, what="the shipper to have sent everything")
    arrived = seqs()
    duplicates = len(arrived) - len(set(arrived))
    assert (duplicates, sorted(set(arrived))) == (0, list(range(count))), f"{duplicates} duplicates"
    assert fields(stream.hits[0]["_source"])[1] == "shiphost"
    stream.close()
    # Beater runs with the store: every line is in the engine too, once.
    status, _ = await post(f"{stack.engine_url}/{index}/_refresh", {})
    assert status == 200
    status, counted = await get(f"{stack.engine_url}/{index}/_count")
    assert (status, counted["count"]) == (200, count)
