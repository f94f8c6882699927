"""A TCP proxy that delays what the server sends back, as a link between hosts does.

``python -m tests.delay_proxy <listen port> <server port> <seconds>``: tests put it between the
router and a Beater to stand for a Beater on another host, whose router messages (among them the
subscription meta-events) arrive that much later.
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.protocols import portforward


class _DelayedClient(portforward.ProxyClient):
    def dataReceived(self, data: bytes) -> None:
        # Same delay for every chunk: they stay in order.
        reactor.callLater(DELAY, self.peer.transport.write, data)

    def connectionLost(self, reason) -> None:
        reactor.callLater(DELAY, portforward.ProxyClient.connectionLost, self, reason)


class _DelayedClientFactory(portforward.ProxyClientFactory):
    protocol = _DelayedClient


class _DelayedServer(portforward.ProxyServer):
    clientProtocolFactory = _DelayedClientFactory


if __name__ == "__main__":
    listen, target, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    factory = portforward.ProxyFactory("127.0.0.1", target)
    factory.protocol = _DelayedServer
    reactor.listenTCP(listen, factory, interface="127.0.0.1")
    reactor.run()
