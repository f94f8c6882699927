"""Clients of a running estrom, for its tests and its benchmark: real ones, nothing faked
(estrom.testing has the doubles).

HTTP over treq, Tailor's stream parsed as it arrives with ijson (as ``curl -N | ijson`` would),
WAMP sessions over autobahn, Beater's ``/metrics`` read with prometheus_client's parser. What a
test waits for, it waits for as an event (a hit, the head, the end of a stream), or by asking
again until the system says so (``eventually``).
"""

from __future__ import annotations

import inspect
import json
import socket
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ijson
from autobahn.twisted.component import Component
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from prometheus_client.parser import text_string_to_metric_families
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from estrom import api
from estrom.wamp import is_rawsocket

TIMEOUT = 20.0

ACKNOWLEDGE = PublishOptions(acknowledge=True)


def http_client(persistent: bool = False, per_host: int = 2) -> HTTPClient:
    """A treq client. The tests' keeps no connection (parts are restarted between tests, and a
    pooled connection to a process that is gone fails the next request); the benchmark's does."""
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool.maxPersistentPerHost = per_host
    return HTTPClient(Agent(reactor, pool=pool))


http = http_client()


def docs_url(beater_url: str, index: str) -> str:
    """Where documents for ``index`` are posted."""
    return f"{beater_url}/api/v0.1/docs/{index}"


async def eventually(condition: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    """Ask ``condition()`` (or what it awaits) again until it is true, and fire with it; fail
    with AssertionError after ``timeout`` s. For what the system says only when asked (an HTTP
    status, a count in the engine); what it announces (hits, a stream's end) has its own wait."""
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


def first(deferreds: list[Deferred], count: int, timeout: float = TIMEOUT) -> Deferred[list[tuple[int, Any]]]:
    """Fires with ``(position, result)`` of the first ``count`` of ``deferreds`` to succeed, in
    the order they did; fails with the first failure of one of them, or AssertionError after
    ``timeout`` s."""
    results: list[tuple[int, Any]] = []
    done: Deferred[list[tuple[int, Any]]] = Deferred()

    def one(result: Any, position: int) -> Any:
        results.append((position, result))
        if len(results) == count and not done.called:
            done.callback(list(results))
        return result

    def failed(failure: Any) -> Any:
        if not done.called:
            done.errback(failure)
        return failure

    for position, deferred in enumerate(deferreds):
        deferred.addCallbacks(one, failed, callbackArgs=(position,))

    def timed_out(failure: Any) -> None:
        failure.trap(defer.TimeoutError)
        raise AssertionError(f"timed out after {timeout} s waiting for {count} answers (have {len(results)})")

    return done.addTimeout(timeout, reactor).addErrback(timed_out)


async def post(
    url: str,
    body: Any,
    content_type: str = "application/json",
    headers: dict | None = None,
    client: HTTPClient = http,
) -> tuple[int, Any]:
    """POST ``body`` (bytes, or JSON-encoded) and fire with ``(status, decoded JSON answer)``."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(
        url, data=data, headers={"Content-Type": content_type, **(headers or {})}, timeout=TIMEOUT
    )
    content = await response.content()
    return response.code, json.loads(content) if content else None


async def get(url: str, params: dict | None = None, headers: dict | None = None) -> tuple[int, Any]:
    """GET ``url`` and fire with ``(status, decoded JSON answer)``."""
    response = await http.get(url, params=params, headers=headers, timeout=TIMEOUT)
    content = await response.content()
    return response.code, json.loads(content) if content else None


def post_blocking(url: str, body: Any, timeout: float = 30) -> Any:
    """POST ``body`` as JSON and return the decoded answer, blocking: for a thread that is not
    the reactor's (a browser test, the benchmark's page load); HTTPError for a status >= 400."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class Waits:
    """Conditions waited for, checked again whenever what they read may have changed (``check``):
    the waits of a client that is told of events, instead of asking again and again."""

    def __init__(self, state: Callable[[], str]):
        self._state = state  # what a timeout says it had
        self._waiting: list[tuple[Callable[[], bool], Deferred]] = []

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> Deferred[None]:
        """Fires once ``condition()`` holds; fails with AssertionError after ``timeout`` s."""
        if condition():
            return succeed(None)
        entry: tuple[Callable[[], bool], Deferred] = (condition, Deferred())
        self._waiting.append(entry)

        def timed_out(failure: Any) -> None:
            failure.trap(defer.TimeoutError)
            if entry in self._waiting:
                self._waiting.remove(entry)
            raise AssertionError(f"timed out after {timeout} s waiting for {what} ({self._state()})")

        return entry[1].addTimeout(timeout, reactor).addErrback(timed_out)

    def check(self) -> None:
        """Fire the waits whose condition holds now."""
        due = [entry for entry in self._waiting if entry[0]()]
        for entry in due:
            self._waiting.remove(entry)
            entry[1].callback(None)


# --- Tailor's stream ------------------------------------------------------------------------


class HttpStream(Protocol):
    """A client of Tailor's endless response, parsing it as it arrives (the response body's
    protocol).

    ``keep``: keep every hit in ``hits`` and the whole body in ``raw`` (the benchmark's thousands
    of streams keep only the head, and count: then ``wait_for_end`` has no body to give).
    ``on_hit`` is called with each hit as it is parsed.
    """

    PATH, ARRAY = "/api/v0.1/docs", "hits"

    def __init__(self, keep: bool = True, on_hit: Callable[[dict], None] | None = None):
        self.raw = b""
        self.hits: list[dict] = []
        self.received = 0
        self.ended = False
        self.status: int | None = None
        self._keep = keep
        self._on_hit = on_hit
        # Frames' figures as floats; hits as ijson gives them (Decimal keeps a document's digits).
        self._parser = ijson.items_coro(self, f"{self.ARRAY}.item", use_float=self.ARRAY == "frames")
        self._waits = Waits(lambda: f"have {self.received} hits, ended: {self.ended}: {self.raw[-300:]!r}")

    @classmethod
    async def open(
        cls,
        tailor_url: str,
        headers: dict | None = None,
        client: HTTPClient = http,
        keep: bool = True,
        on_hit: Callable[[dict], None] | None = None,
        **params: Any,
    ) -> HttpStream:
        """Ask Tailor for a stream (``params``: ``i`` and ``q``, or ``s``...), once its status is in."""
        stream = cls(keep, on_hit)
        response = await client.get(
            tailor_url + cls.PATH, params=params, headers=headers, unbuffered=True, timeout=TIMEOUT
        )
        stream.status = response.code
        response.deliverBody(stream)
        return stream

    @property
    def headed(self) -> bool:
        return b'"%s": [' % self.ARRAY.encode() in self.raw

    @property
    def subscription_id(self) -> str:
        head = self.raw.split(b'"%s"' % self.ARRAY.encode())[0]
        return json.loads(head.rstrip(b", ") + b"}")["subscription_id"]

    async def wait_for_head(self, timeout: float = TIMEOUT) -> str:
        """Fire with the subscription ID once the head is in; AssertionError if Tailor answered
        otherwise than 200."""
        if self.status != 200:
            await self.wait_for(lambda: self.ended, "the error answer", timeout)
            raise AssertionError(f"stream answered {self.status}: {self.raw!r}")
        await self.wait_for(lambda: self.headed or self.ended, "the head of the stream", timeout)
        if not self.headed:
            raise AssertionError(f"the stream ended before its head: {self.raw!r}")
        return self.subscription_id

    async def wait_for_hits(self, count: int, timeout: float = TIMEOUT) -> list[dict]:
        """Fire with the hits once there are ``count`` (kept or not: ``received`` counts);
        AssertionError if the stream ends with fewer."""
        await self.wait_for(lambda: self.received >= count or self.ended, f"{count} hits", timeout)
        if self.received < count:
            raise AssertionError(
                f"the stream ended after {self.received} of {count} hits: {self.raw[-300:]!r}"
            )
        return self.hits

    async def wait_for_end(self, timeout: float = TIMEOUT) -> Any:
        """Fire with the whole body once the response has ended: it must be valid JSON."""
        await self.wait_for(lambda: self.ended, "the end of the stream", timeout)
        return json.loads(self.raw)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> Deferred[None]:
        """Fires once ``condition()`` holds, as checked whenever bytes, a hit or the end arrive;
        fails with AssertionError after ``timeout`` s."""
        return self._waits.wait_for(condition, what, timeout)

    def close(self) -> None:
        """Go away, as a client does on Ctrl-C."""
        if not self.ended and self.transport is not None:
            self.transport.stopProducing()

    def send(self, hit: dict) -> None:  # ijson's target: one parsed hit
        self.received += 1
        if self._keep:
            self.hits.append(hit)
        if self._on_hit is not None:
            self._on_hit(hit)

    def dataReceived(self, data: bytes) -> None:
        if self._keep or not self.headed:
            self.raw += data
        self._parser.send(data)
        self._waits.check()

    def connectionLost(self, reason: Any = None) -> None:
        self.ended = True
        self._waits.check()


class AggsStream(HttpStream):
    """A client of Tailor's aggregated tail (``/api/v0.1/aggs``): its frames are in ``hits``."""

    PATH, ARRAY = "/api/v0.1/aggs", "frames"

    async def wait_for_frame(self, condition: Callable[[dict], bool], timeout: float = TIMEOUT) -> dict:
        """Fire with the first frame (from now on) for which ``condition`` holds."""
        seen = len(self.hits)
        await self.wait_for(
            lambda: any(condition(frame) for frame in self.hits[seen:]) or self.ended, "a frame", timeout
        )
        for frame in self.hits[seen:]:
            if condition(frame):
                return frame
        raise AssertionError(f"the stream ended without such a frame: {self.raw[-500:]!r}")


def never_reading_stream(port: int, index: str, query: str) -> socket.socket:
    """A blocking socket that has asked Tailor on ``port`` for a stream and reads nothing (its
    receive buffer is small): a client that falls behind."""
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(TIMEOUT)
    client.connect(("127.0.0.1", port))
    params = urllib.parse.urlencode({"i": index, "q": query})
    client.sendall(
        f"GET /api/v0.1/docs?{params} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    )
    return client


# --- WAMP -----------------------------------------------------------------------------------


def _component(router_url: str, authentication: dict | None) -> Component:
    transport = (
        {"type": "rawsocket", "url": router_url, "serializer": "cbor", "max_retries": 0}
        if is_rawsocket(router_url)
        else {"type": "websocket", "url": router_url, "max_retries": 0}
    )
    return Component(transports=[transport], realm="estrom", authentication=authentication or {})


async def wamp_session(router_url: str, authentication: dict | None = None) -> Any:
    """A joined autobahn WAMP session (anonymous unless ``authentication`` says otherwise)."""
    outcome = await wamp_attempt(router_url, authentication)
    if isinstance(outcome, tuple):
        raise AssertionError(f"the router refused the session: {outcome}")  # noqa: TRY004
    return outcome


async def wamp_attempt(router_url: str, authentication: dict | None = None) -> Any:
    """Try to join: fires with the joined session, or the error URI and message with which the
    router refused it (``authentication`` as in wamp_session)."""
    component = _component(router_url, authentication)
    outcome: Deferred = Deferred()

    def joined(session: Any, details: Any) -> None:
        if not outcome.called:
            outcome.callback(session)

    def left(session: Any, details: Any) -> None:
        if not outcome.called:
            outcome.callback((details.reason, details.message))

    def gave_up(failure: Any) -> None:  # its one try is over
        if not outcome.called:
            outcome.errback(failure)

    component.on("join", joined)
    component.on("leave", left)
    component.start(reactor).addErrback(gave_up)
    return await outcome.addTimeout(TIMEOUT, reactor)


async def wamp_refusal(router_url: str, authentication: dict | None = None) -> tuple[str, str]:
    """The error URI and message with which the router refuses a session that tries to join;
    AssertionError if it joins."""
    outcome = await wamp_attempt(router_url, authentication)
    if not isinstance(outcome, tuple):
        outcome.leave()
        raise AssertionError(f"joined as {outcome.authid} ({outcome.authrole})")  # noqa: TRY004
    return outcome


class Received:
    """A WAMP event handler (``session.subscribe(received, topic)``) that keeps what arrives:
    ``events``, each the tuple of hits one publication carried, and ``hits``, all of them."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.hits: list[Any] = []
        self._waits = Waits(lambda: f"have {len(self.hits)} hits")

    def __call__(self, *hits: Any) -> None:
        self.events.append(hits)
        self.hits.extend(hits)
        self._waits.check()

    async def wait_for(self, count: int, timeout: float = TIMEOUT) -> list:
        """Fires with the hits once there are ``count``; AssertionError after ``timeout`` s."""
        await self._waits.wait_for(lambda: len(self.hits) >= count, f"{count} hits", timeout)
        return self.hits


async def subscribers(meta: Any, sid: str) -> int:
    """How many sessions the router has subscribed to the topic of ``sid`` (``meta``: a session
    that may call the router's meta API)."""
    subscription = await meta.call("wamp.subscription.lookup", api.topic(sid))
    if subscription is None:
        return 0
    try:
        return await meta.call("wamp.subscription.count_subscribers", subscription)
    except ApplicationError as e:
        if e.error == "wamp.error.no_such_subscription":  # deleted since the lookup
            return 0
        raise


async def until_subscribed(stack: Any, index: str, query: str) -> None:
    """Wait until some session (Tailor, for a stream) has subscribed to the topic of ``query``
    on ``index`` (``stack``: its ``router_url`` and Beater's ``secret``): a document posted
    after that reaches its subscribers."""
    client = await wamp_session(stack.router_url)
    meta = await wamp_session(stack.router_url, {"ticket": {"authid": "beater", "ticket": stack.secret}})
    try:
        sid = await client.call(api.REGISTER, index, query)
        await eventually(lambda: subscribers(meta, sid), what=f"a subscriber of {query!r}")
    finally:
        client.leave()
        meta.leave()


# --- What the parts count -------------------------------------------------------------------

Scrape = dict[tuple[str, tuple], float]  # {(sample name, sorted labels): value}


async def scrape(url: str, headers: dict | None = None) -> Scrape:
    """A service's ``/metrics`` as ``{(sample name, sorted labels): value}``."""
    response = await http.get(f"{url}/metrics", headers=headers, timeout=TIMEOUT)
    text = (await response.content()).decode()
    if response.code != 200:
        raise AssertionError(f"/metrics answered {response.code}: {text}")
    kind = response.headers.getRawHeaders(b"Content-Type", [b""])[0]
    if not kind.startswith(b"text/plain"):  # Prometheus's text format
        raise AssertionError(f"/metrics answered as {kind!r}")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def grew(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How much the samples named ``name`` with ``labels`` (all of them, if none are given) grew
    between two scrapes."""

    def total(scraped: Scrape) -> float:
        wanted = set(labels.items())
        return sum(value for (sample, has), value in scraped.items() if sample == name and wanted <= set(has))

    return total(after) - total(before)


async def percolations(engine_url: str, index: str, client: HTTPClient = http) -> int:
    """How many searches the engine has run on the percolator index of ``index``."""
    response = await client.get(f"{engine_url}/estrom-queries-{index}/_stats/search", timeout=60)
    stats = await response.json()
    return stats["_all"]["primaries"]["search"]["query_total"]


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class ProcessLines(ProcessProtocol):
    """A child process's output, line by line, and its exit status once it has ended."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stderr = b""
        self.status: int | None = None
        self.ended = False
        self._partial = b""
        self._waits = Waits(
            lambda: f"lines {self.lines[-5:]}, stderr {self.stderr[-300:]!r}, ended: {self.ended}"
        )

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> Deferred[None]:
        """Fires once ``condition()`` holds, as checked whenever output comes or the process
        ends; fails with AssertionError after ``timeout`` s."""
        return self._waits.wait_for(condition, what, timeout)

    def outReceived(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.lines += [line.decode() for line in complete]
        self._waits.check()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        self._waits.check()

    def processEnded(self, reason: Any) -> None:
        self.status = reason.value.exitCode
        self.ended = True
        self._waits.check()


# --- A shipper and readers under faults -------------------------------------------------------


def pause(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class ResendingSender:
    """Sends ``rate`` documents a second (``{"service": "api", "n": N}``, numbered) in 10
    requests a second, as a shipper's batches; resends a request answered 429 or 503 (or not
    answered) until it is taken, as Logstash's http output does. ``named``: to Beater's
    ``_bulk`` (``url`` is Beater's), each document named ``n-N``, as Logstash's elasticsearch
    output with a ``document_id`` does."""

    REQUESTS_PER_SECOND = 10

    def __init__(self, url: str, rate: int, index: str | None = None):
        self.url = url
        self.rate = rate
        self.index = index  # named documents to this index, through _bulk
        self.running = True
        self.taken: set[int] = set()  # numbers of the documents answered 2xx
        self.sent = 0
        self.answers: Counter = Counter()

    def refused(self) -> int:
        """Requests answered otherwise than 200 (or not answered) so far."""
        return sum(count for status, count in self.answers.items() if status != 200)

    async def run(self) -> None:
        size = max(1, self.rate // self.REQUESTS_PER_SECOND)
        number = 0
        while self.running:
            started = reactor.seconds()
            batch = list(range(number, number + size))
            number += size
            delay = 0.1
            while True:
                self.sent += len(batch)
                try:
                    status, answer = await self._post(batch)
                except Exception:  # noqa: BLE001 - refused, reset: Beater is away
                    status = "no answer"
                self.answers[status] += 1
                if status == 200:
                    assert self.index is None or not answer["errors"], answer
                    self.taken.update(batch)
                    break
                assert status in (429, 503, "no answer"), status  # anything else is a bug
                await pause(delay)
                delay = min(delay * 2, 2.0)
            await pause(max(0.0, 1 / self.REQUESTS_PER_SECOND - (reactor.seconds() - started)))

    async def _post(self, batch: list[int]) -> tuple[int, Any]:
        if self.index is None:
            return await post(self.url, [{"service": "api", "n": n} for n in batch])
        lines = []
        for n in batch:
            lines.append({"index": {"_index": self.index, "_id": f"n-{n}"}})
            lines.append({"service": "api", "n": n})
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return await post(f"{self.url}/_bulk", body, "application/x-ndjson")


class ResumingReader:
    """A stream of ``service:api`` that reconnects after the cursor of the last hit it got."""

    def __init__(self, tailor_url: str, index: str):
        self.tailor_url = tailor_url
        self.index = index
        self.running = True
        self.numbers: list[int] = []
        self.cursor: str | None = None
        self.connections = 0
        self.gaps = 0
        self.stream: HttpStream | None = None

    async def run(self) -> None:
        while self.running:
            params = {"i": self.index, "q": "service:api"}
            if self.cursor is not None:
                params["after"] = self.cursor
            try:
                stream = self.stream = await HttpStream.open(self.tailor_url, on_hit=self._hit, **params)
            except Exception:  # noqa: BLE001 - Tailor is away
                await pause(0.2)
                continue
            if not self.running:  # stopped while it opened
                stream.close()
                break
            if stream.status != 200:
                await stream.wait_for(lambda s=stream: s.ended, "the error answer")
                await pause(0.2)
                continue
            self.connections += 1
            await stream.wait_for(lambda s=stream: s.ended, "the stream to end", timeout=3600)
            if b'"gap": true' in stream.raw.split(b'"hits"')[0]:
                self.gaps += 1

    def _hit(self, hit: dict) -> None:
        self.numbers.append(hit["_source"]["n"])
        self.cursor = hit["_cursor"]

    def lost(self) -> bool:
        """Whether the stream it had is gone (Tailor went away)."""
        return self.stream is None or self.stream.ended

    def stop(self) -> None:
        self.running = False
        if self.stream is not None:
            self.stream.close()


def delivery_figures(sender: ResendingSender, readers: list[ResumingReader]) -> dict[str, Any]:
    """What reached the readers of what the sender got a 2xx for."""
    return {
        "sent (with resends)": sender.sent,
        "taken (2xx)": len(sender.taken),
        "answers": {str(k): v for k, v in sender.answers.items()},
        "delivered per stream": sorted({len(r.numbers) for r in readers}),
        "missing per stream": sorted({len(sender.taken - set(r.numbers)) for r in readers}),
        "duplicates per stream": sorted(
            {sum(1 for n, c in Counter(r.numbers).items() if c > 1 and n in sender.taken) for r in readers}
        ),
        "connections per stream": sorted({r.connections for r in readers}),
        "gaps said": sum(r.gaps for r in readers),
    }


async def settle(
    sender: ResendingSender,
    sending: Deferred,
    readers: list[ResumingReader],
    reading: list[Deferred],
    name: str,
    more: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """After the faults: a second's more documents taken, the sender stopped, every document it
    got a 2xx for waited for at every reader, the readers stopped. Prints ``name: {figures}``
    (``more`` first, then delivery_figures) whatever happened, and returns them."""
    try:
        taken = len(sender.taken)
        await eventually(
            lambda: len(sender.taken) >= taken + sender.rate, timeout=90, what="documents taken at the end"
        )
    finally:
        sender.running = False
        await sending
    try:
        await eventually(
            lambda: all(sender.taken <= set(r.numbers) for r in readers),
            timeout=90,
            what="every taken document at every stream",
        )
    finally:
        for reader in readers:
            reader.stop()
        await defer.gatherResults(reading)
        figures = {**(more or {}), **delivery_figures(sender, readers)}
        print(f"{name}:", json.dumps(figures))
    return figures
