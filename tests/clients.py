"""Real clients for the tests: HTTP (treq), a streaming JSON reader (ijson), WAMP (autobahn)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import ijson
from autobahn.twisted.component import Component
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from estrom import api
from estrom.wamp import is_rawsocket

TIMEOUT = 20.0

# No kept-alive connections: parts are restarted between tests (and once per engine), and a
# pooled connection to a process that is gone fails the next request.
http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


async def eventually(condition: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    """Wait until ``condition()`` (or what it awaits) is true; fail after ``timeout`` s."""
    deadline = reactor.seconds() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(reactor, 0.02, lambda: None)


async def post(
    url: str, body: Any, content_type: str = "application/json", headers: dict | None = None
) -> tuple[int, Any]:
    """POST ``body`` (bytes, or JSON-encoded) and return ``(status, decoded JSON answer)``."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await http.post(
        url, data=data, headers={"Content-Type": content_type, **(headers or {})}, timeout=TIMEOUT
    )
    content = await response.content()
    return response.code, json.loads(content) if content else None


async def get(url: str, params: dict | None = None, headers: dict | None = None) -> tuple[int, Any]:
    response = await http.get(url, params=params, headers=headers, timeout=TIMEOUT)
    content = await response.content()
    return response.code, json.loads(content) if content else None


class _Feed(Protocol):
    def __init__(self, stream: HttpStream):
        self.stream = stream

    def dataReceived(self, data: bytes) -> None:
        self.stream.raw += data
        self.stream._parser.send(data)

    def connectionLost(self, reason) -> None:
        self.stream.ended = True


class HttpStream:
    """A client of Tailor's endless response, parsing it incrementally as `curl -N | ijson`."""

    def __init__(self):
        self.raw = b""
        self.hits: list[dict] = []
        self.ended = False
        self.status: int | None = None
        self._parser = ijson.items_coro(_Collector(self.hits), "hits.item")
        self._feed: _Feed | None = None

    @classmethod
    async def open(cls, tailor_url: str, headers: dict | None = None, **params: Any) -> HttpStream:
        stream = cls()
        response = await http.get(
            tailor_url + "/api/v0.1/docs", params=params, headers=headers, unbuffered=True, timeout=TIMEOUT
        )
        stream.status = response.code
        stream._feed = _Feed(stream)
        response.deliverBody(stream._feed)
        return stream

    @property
    def subscription_id(self) -> str:
        head = self.raw.split(b'"hits"')[0]
        return json.loads(head.rstrip(b", ") + b"}")["subscription_id"]

    async def wait_for_head(self) -> str:
        if self.status != 200:
            await eventually(lambda: self.ended, what="the error answer")
            raise AssertionError(f"stream answered {self.status}: {self.raw!r}")
        await eventually(lambda: b'"hits": [' in self.raw, what="the head of the stream")
        return self.subscription_id

    async def wait_for_hits(self, count: int) -> list[dict]:
        await eventually(lambda: len(self.hits) >= count, what=f"{count} hits (have {len(self.hits)})")
        return self.hits

    async def wait_for_end(self) -> Any:
        """Wait for the response to end; return the whole body, which must be valid JSON."""
        await eventually(lambda: self.ended, what="the end of the stream")
        return json.loads(self.raw)

    def close(self) -> None:
        """Go away, as a client does on Ctrl-C."""
        if not self.ended:
            self._feed.transport.stopProducing()


class _Collector:
    def __init__(self, items: list):
        self.items = items

    def send(self, item: Any) -> None:
        self.items.append(item)


async def wamp_session(router_url: str, authentication: dict | None = None):
    """A joined autobahn WAMP session (anonymous unless ``authentication`` says otherwise)."""
    transport = (
        {"type": "rawsocket", "url": router_url, "serializer": "cbor", "max_retries": 0}
        if is_rawsocket(router_url)
        else {"type": "websocket", "url": router_url, "max_retries": 0}
    )
    component = Component(
        transports=[transport],
        realm="estrom",
        authentication=authentication or {},
    )
    joined: Deferred = Deferred()
    component.on("join", lambda session, details: joined.callback(session))
    component.start(reactor)
    session = await joined
    return session


async def wamp_attempt(router_url: str, authentication: dict | None = None):
    """Try to join: the joined session, or the error URI and message with which the router
    refused it (``authentication`` as in wamp_session)."""
    transport = (
        {"type": "rawsocket", "url": router_url, "serializer": "cbor", "max_retries": 0}
        if is_rawsocket(router_url)
        else {"type": "websocket", "url": router_url, "max_retries": 0}
    )
    component = Component(transports=[transport], realm="estrom", authentication=authentication or {})
    outcome: Deferred = Deferred()

    def joined(session, details):
        if not outcome.called:
            outcome.callback(session)

    def left(session, details):
        if not outcome.called:
            outcome.callback((details.reason, details.message))

    component.on("join", joined)
    component.on("leave", left)
    component.start(reactor).addErrback(lambda _: None)  # fails once its one try is over
    return await outcome


async def wamp_refusal(router_url: str, authentication: dict | None = None) -> tuple[str, str]:
    """The error URI and message with which the router refuses a session that tries to join;
    AssertionError if it joins."""
    outcome = await wamp_attempt(router_url, authentication)
    if not isinstance(outcome, tuple):
        outcome.leave()
        raise AssertionError(f"joined as {outcome._authid} ({outcome._authrole})")  # noqa: TRY004
    return outcome


async def subscribers(meta, sid: str) -> int:
    """How many sessions the router has subscribed to the topic of ``sid``."""
    subscription = await meta.call("wamp.subscription.lookup", api.topic(sid))
    try:
        return (
            0
            if subscription is None
            else await meta.call("wamp.subscription.count_subscribers", subscription)
        )
    except ApplicationError as e:
        if e.error == "wamp.error.no_such_subscription":  # deleted since the lookup
            return 0
        raise


async def until_subscribed(stack, index: str, query: str) -> None:
    """Wait until some session (Tailor, for a stream) has subscribed to the topic of ``query``
    on ``index``: a document posted after that reaches its subscribers."""
    client = await wamp_session(stack.router_url)
    meta = await wamp_session(stack.router_url, {"ticket": {"authid": "beater", "ticket": stack.secret}})
    try:
        sid = await client.call(api.REGISTER, index, query)
        await eventually(lambda: subscribers(meta, sid), what=f"a subscriber of {query!r}")
    finally:
        client.leave()
        meta.leave()


ACKNOWLEDGE = PublishOptions(acknowledge=True)


class ProcessLines(ProcessProtocol):
    """A child process's output, line by line, and its exit status once it has ended."""

    def __init__(self):
        self.lines: list[str] = []
        self.stderr = b""
        self.status: int | None = None
        self.ended = False
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.lines += [line.decode() for line in complete]

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason) -> None:
        self.status = reason.value.exitCode
        self.ended = True
