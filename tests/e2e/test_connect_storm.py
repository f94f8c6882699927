"""A reconnect storm: thousands of clients connect at the same moment, and each is answered
within seconds (200, or 503 past a bound), none left to retransmit its SYN for a minute: the
kernel turns fewer SYNs away than there are clients.

Twisted listens with a backlog of 50 unless told otherwise: 10,000 connections at once overflowed
it (the kernel counted 49,805 listen overflows), and up to 752 clients got no answer within 60 s.
`make test` opens ESTROM_CONNECT_STORM (10,000) streams at once.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ClientFactory, Protocol

CONNECTIONS = int(os.environ.get("ESTROM_CONNECT_STORM", "10000"))
# On this 2-core machine one Tailor reads 10,000 requests in 4 to 9 s (it was 4.3 s when this
# test was written, 8 to 9 s since, before and after issue 25): a SYN retransmitted adds 1, 3, 7,
# 15 s..., which the overflow count tells.
ANSWERED_WITHIN = 20.0

# The storm is Tailor's: run on one engine.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


def _backlog(port: int) -> int:
    """The accept queue's length of the socket listening on ``port`` (``ss``'s Send-Q)."""
    lines = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True)
    return int(lines.stdout.split()[2])


def _listen_overflows() -> int:
    """The kernel's count of connections a full accept queue turned away (TcpExt ListenOverflows):
    each such client retransmits its SYN, after 1 s, 3 s, 7 s..."""
    with open("/proc/net/netstat") as netstat:
        names, values = [line.split() for line in netstat if line.startswith("TcpExt:")][:2]
    return int(values[names.index("ListenOverflows")])


def test_every_part_listens_with_a_backlog_for_a_storm(stack):
    for port in (stack.ports.beater, stack.ports.tailor, stack.ports.router):
        assert _backlog(port) >= 1024, port


class _Opening(Protocol):
    """One client: sends its request at once, and notes when the status line arrives."""

    def __init__(self, request: bytes, started: float):
        self.request, self.started = request, started
        self.answered: Deferred[tuple[int | None, float]] = Deferred()
        self._head = b""

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        if self.answered.called:
            return
        self._head += data
        if b"\r\n" in self._head:
            status = int(self._head.split(b" ", 2)[1])
            self.answered.callback((status, time.monotonic() - self.started))

    def connectionLost(self, reason=None) -> None:
        if not self.answered.called:
            self.answered.callback((None, time.monotonic() - self.started))


class _Clients(ClientFactory):
    """``count`` clients; ``all_tried`` fires once each connected or failed to."""

    def __init__(self, request: bytes, count: int):
        self.request, self.count = request, count
        self.started = time.monotonic()
        self.openings: list[_Opening] = []
        self.all_tried: Deferred[None] = Deferred()

    def buildProtocol(self, addr) -> _Opening:
        return self._add(_Opening(self.request, self.started))

    def clientConnectionFailed(self, connector, reason) -> None:
        self._add(_Opening(self.request, self.started)).connectionLost(reason)

    def _add(self, opening: _Opening) -> _Opening:
        self.openings.append(opening)
        if len(self.openings) == self.count:
            self.all_tried.callback(None)
        return opening


@pytest_twisted.ensureDeferred
async def test_thousands_of_streams_opened_at_once_are_each_answered_within_seconds(stack, index):
    port = stack.ports.tailor
    request = f"GET /api/v0.1/docs?i={index}&q=storm HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    overflows = _listen_overflows()
    clients = _Clients(request, CONNECTIONS)
    connectors = [reactor.connectTCP("127.0.0.1", port, clients, timeout=60) for _ in range(CONNECTIONS)]
    try:
        await clients.all_tried.addTimeout(90, reactor)
        answers = await gatherResults([opening.answered for opening in clients.openings])
        statuses: dict = {}
        for status, _ in answers:
            statuses[status] = statuses.get(status, 0) + 1
        late = sorted(seconds for status, seconds in answers if seconds > ANSWERED_WITHIN)
        assert len(answers) == CONNECTIONS, statuses
        assert set(statuses) <= {200, 503}, statuses
        overflowed = _listen_overflows() - overflows
        assert late == [], (
            f"{len(late)} answered after {ANSWERED_WITHIN} s (statuses {statuses}, {overflowed} overflows)"
        )
        # With the backlog of 50 the kernel counted 49,805 overflows, five SYNs turned away per
        # client; with 4,096 some are still turned away once on a busy machine (CI saw 17, and
        # 1,230), and sent again 1 s later.
        assert overflowed < CONNECTIONS
        slowest = max(s for _, s in answers)
        print(f"{CONNECTIONS} at once: {statuses}, slowest {slowest:.1f} s, {overflowed} listen overflows")
    finally:
        for connector in connectors:
            connector.disconnect()
