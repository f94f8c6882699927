"""The search engine's REST API, over treq, with plain ``application/json``.

The official ``elasticsearch`` client is not used on purpose: it refuses OpenSearch, and each of
its majors talks to one server major only, while the few endpoints the percolator needs are the
same on Elasticsearch 7/8/9 and OpenSearch 1/2/3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import msgspec
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectionClosed,
    DNSLookupError,
    TimeoutError,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    PartialDownloadError,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse

# Every way the engine can fail to answer at all: connection failures come as themselves while
# connecting, wrapped in ResponseFailed & co. once the request is on its way. Failing to answer in
# time is the deadline's (Engine._timed_out), whatever the cancelled exchange raised then
# (ConnectingCancelledError while connecting, CancelledError or ResponseNeverReceived after).
_UNREACHABLE = (
    ConnectError,
    ConnectionClosed,
    DNSLookupError,
    TimeoutError,
    ResponseFailed,
    ResponseNeverReceived,
    RequestTransmissionFailed,
    PartialDownloadError,
)


class EngineUnavailable(Exception):
    """The engine did not answer, or answered that it cannot serve now (5xx); ``status`` is its
    answer's status, if it answered. ``sent``: whether the request may have reached the engine
    (False: no connection was made, so it did nothing of it)."""

    def __init__(self, message: str, status: int | None = None, sent: bool = True):
        super().__init__(message)
        self.status = status
        self.sent = sent


# Refusals that say how estrom or the engine is set up (a closed or write-blocked index, a
# security plugin refusing Beater's requests), not what a sender sent: no sender can mend them.
_MISCONFIGURATIONS = {
    "index_closed_exception",
    "cluster_block_exception",
    "security_exception",
    "authorization_exception",
}


class Encoded:
    """A value encoded as JSON already, to stand where it goes in a request body (see
    ``encode``): a batch's documents, encoded once for every page of its percolation."""

    def __init__(self, data: bytes):
        self.data = data


# Encoded values are written into a body where this string stands (in JSON: NUL is escaped, and
# it stands only where ``_body`` put it: the rest of a body is estrom's own keys and IDs).
_ENCODED = "\x00estrom-encoded\x00"
_ENCODED_JSON = json.dumps(_ENCODED).encode()
# Values from this many on are encoded in a thread of the reactor's pool, one at a time, so that
# the reactor gets its turn between them (Python runs one thread at a time; one call of the JSON
# encoder keeps it).
ENCODE_IN_THREAD = 200


async def encode(values: list) -> Encoded:
    """``values`` as a JSON array (off the reactor's thread from ENCODE_IN_THREAD values on)."""
    if len(values) < ENCODE_IN_THREAD:
        return Encoded(_array(values))
    return Encoded(await deferToThread(_array, values))


# msgspec encodes documents for the engine 10 to 40 times faster than the standard library
# (bench/codecs.py); the documents came from JSON, so it has nothing it could not encode.
_encode = msgspec.json.Encoder().encode


# And decodes the engine's answers twice as fast (a percolation's hit: 0.5 µs instead of 1.0).
_decode = msgspec.json.Decoder().decode


def _answer(content: bytes) -> Any:
    """An answer's JSON, decoded; what msgspec refuses is read by the standard library (which
    takes NaN), and what neither reads is kept as the error's text."""
    try:
        return _decode(content)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return {"error": content.decode("utf-8", "replace")[:500]}


def _array(values: list) -> bytes:
    return _encode(values)


def _body(body: Any) -> bytes:
    """``body`` as JSON, with its Encoded values as they were encoded."""
    encoded: list[bytes] = []

    def stand_in(value: Any) -> str:
        if not isinstance(value, Encoded):
            raise TypeError(f"{type(value).__name__} is not JSON")
        encoded.append(value.data)
        return _ENCODED

    data = json.dumps(body, default=stand_in).encode("utf-8")
    if not encoded:
        return data
    parts = data.split(_ENCODED_JSON)
    return b"".join(part for pair in zip(parts, [*encoded, b""], strict=True) for part in pair)


class EngineError(Exception):
    """The engine refused a request (4xx); ``reason`` is its own explanation."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        self.type, self.reason = _reason(body)
        super().__init__(f"{status} {self.type}: {self.reason}")

    @property
    def misconfiguration(self) -> bool:
        """Whether the engine refused because of how estrom or the engine is set up."""
        return (
            self.status in (401, 403)
            or self.type in _MISCONFIGURATIONS
            or _outer(self.body) in (_MISCONFIGURATIONS)
        )


def _outer(body: Any) -> str | None:
    """The outermost type of error the engine gave."""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("type")) if isinstance(error, dict) else None


def _reason(body: Any) -> tuple[str, str]:
    """The innermost (most specific) cause the engine gave."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "error", str(error or body)
    while isinstance(error.get("caused_by"), dict):
        error = error["caused_by"]
    # A search that failed on every shard may say only that (Elasticsearch 7 leaves out
    # caused_by): the shards' own cause is its first root cause.
    roots = body["error"].get("root_cause")
    if error.get("type") == "search_phase_execution_exception" and roots and isinstance(roots[0], dict):
        error = roots[0]
    return str(error.get("type", "error")), str(error.get("reason", ""))


def _ndjson(actions: list[dict]) -> bytes:
    return b"".join(_encode(a) + b"\n" for a in actions)


class Engine:
    """A search engine node or cluster at ``url``.

    Every request has ``timeout`` seconds, from connecting to the last byte of the answer.
    ``http`` is the treq-like client to send requests with (by default one with a pool of
    ``connections`` kept-alive connections; a test's ``treq.testing.StubTreq``), ``clock`` the
    reactor that measures the timeout.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        *,
        http: Any = None,
        clock: IReactorTime | None = None,
        connections: int = 16,
    ):
        self.url = url.rstrip("/")
        self.timeout = timeout
        from twisted.internet import reactor

        if http is None:
            # A pool of its own: treq's shared one keeps 2 connections per host, so concurrent
            # percolations and registrations would open (and close) a connection per request.
            pool = HTTPConnectionPool(reactor, persistent=True)
            pool.maxPersistentPerHost = connections
            http = HTTPClient(Agent(reactor, pool=pool))
        self._http = http
        self._clock = clock if clock is not None else reactor

    async def request(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        """Send one request; fire with the decoded JSON answer of a 2xx response.

        Raises EngineUnavailable when nothing answers whole within ``timeout`` or the answer is a
        5xx or 429, EngineError for any other non-2xx answer.
        """
        # Bytes are NDJSON (the bulk API's body); anything else is one JSON value.
        content_type = "application/x-ndjson" if isinstance(body, bytes) else "application/json"
        data = body if body is None or isinstance(body, bytes) else _body(body)
        exchange = Deferred.fromCoroutine(self._exchange(method, self.url + path, data, params, content_type))
        # One deadline for the whole exchange: treq's own timeout ends once the head has
        # arrived, and a body that stalls would then be waited for without end.
        exchange.addTimeout(self.timeout, self._clock, onTimeoutCancel=self._timed_out)
        try:
            code, content = await exchange
        except _UNREACHABLE as e:
            raise EngineUnavailable(
                f"search engine at {self.url} unreachable: {_describe(e)}",
                sent=not isinstance(e, ConnectError),
            ) from e
        answer = _answer(content) if content else None
        # 429: the engine's queues are full (rejected execution): busy, not a bad request.
        if code >= 500 or code == 429:
            raise EngineUnavailable(
                f"search engine answered {code} to {method} {path}: {_reason(answer)[1]}", code
            )
        if code >= 300:
            raise EngineError(code, answer)
        return answer

    async def bulk(self, actions: list[dict]) -> Any:
        """Send ``actions`` (action and source lines) to the bulk API; fire with its answer.

        The bulk API answers 200 even when items fail: their statuses are in ``items``.
        """
        if len(actions) < 2 * ENCODE_IN_THREAD:
            return await self.request("POST", "/_bulk", _ndjson(actions))
        return await self.request("POST", "/_bulk", await deferToThread(_ndjson, actions))

    async def bulk_items(self, items: list[list[dict]]) -> list[FailedItem]:
        """Send ``items`` (each its action line, and its source line if it has one) in one bulk
        request; fire with those the engine refused, in order. An item refused for a reason a
        moment can mend (429, 5xx) is sent once more, with the others like it."""
        refused = refused_items(await self.bulk([line for item in items for line in item]), len(items))
        passing = [r for r in refused if r.status == 429 or r.status >= 500]
        if not passing:
            return refused
        answer = await self.bulk([line for r in passing for line in items[r.position]])
        still = {
            passing[r.position].position: replace(r, position=passing[r.position].position)
            for r in refused_items(answer, len(passing))
        }
        kept = [r for r in refused if r not in passing]
        return sorted([*kept, *still.values()], key=lambda r: r.position)

    async def _exchange(
        self, method: str, url: str, data: bytes | None, params: dict | None, content_type: str
    ) -> tuple[int, bytes]:
        response = await self._http.request(
            method,
            url,
            data=data,
            params=params,
            headers={"Content-Type": content_type, "Accept": "application/json"},
            allow_redirects=False,  # the engine's API does not redirect; a 3xx is an error
            unbuffered=True,  # read by _read_body, which can be cancelled
        )
        return response.code, await _read_body(response)

    def _timed_out(self, result: Any, timeout: float) -> Failure:
        return Failure(EngineUnavailable(f"search engine at {self.url} did not answer within {timeout:g} s"))


@dataclass(frozen=True)
class FailedItem:
    """An item of a bulk request that the engine did not carry out."""

    position: int  # among the request's items
    status: int
    type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.reason}"


def refused_items(answer: Any, count: int) -> list[FailedItem]:
    """The items of a bulk ``answer`` to ``count`` items that failed: each with a status of 300
    or more, and any the answer does not account for (as 500)."""
    items = answer.get("items") if isinstance(answer, dict) else None
    items = items if isinstance(items, list) else []
    refused = []
    for position in range(count):
        item = items[position] if position < len(items) else None
        result = next(iter(item.values()), None) if isinstance(item, dict) and item else None
        if not isinstance(result, dict):
            refused.append(FailedItem(position, 500, "no_answer", "the engine's answer has no such item"))
            continue
        status = result.get("status")
        status = status if isinstance(status, int) else 500
        if status >= 300:
            error = result.get("error")
            kind, reason = _reason({"error": error}) if isinstance(error, dict) else ("error", str(error))
            refused.append(FailedItem(position, status, kind, reason))
    return refused


class _Body(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: Deferred[bytes] = Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:
        # PotentialDataLoss: a body without a length, ended by closing the connection (as treq
        # reads it too).
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(ResponseFailed([reason]))

    def _cancel(self, done: Deferred[bytes]) -> None:
        # Close the connection: otherwise it stays open, in use, for as long as the engine stalls.
        if self.transport is not None:
            self.transport.stopProducing()


def _read_body(response: IResponse) -> Deferred[bytes]:
    """Fire with the whole body of ``response``; cancelling it closes the connection.

    treq's ``content()`` cannot be cancelled that way, and Twisted's ``readBody`` looks for an
    ``abortConnection`` that an agent's response body transport does not have.
    """
    body = _Body()
    response.deliverBody(body)
    return body.done


def _describe(error: Exception) -> str:
    """What went wrong, readably: Twisted's ResponseFailed & co. carry a list of Failures."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(reason.getErrorMessage() or reason.type.__name__ for reason in reasons)
    return str(error) or type(error).__name__


def path(*segments: str) -> str:
    """A URL path from raw segments (index names, IDs), each percent-encoded."""
    return "".join("/" + quote(segment, safe="") for segment in segments)


async def engine_answers(engine: Engine) -> str | None:
    """Beater's readiness check of the engine: None when it answers its cluster health, else why
    not, in a few words (the readiness answer needs no token: no URL, no engine message)."""
    try:
        await engine.request("GET", "/_cluster/health")
    except EngineUnavailable as e:
        return f"the search engine answered {e.status}" if e.status else "the search engine does not answer"
    except EngineError as e:
        return f"the search engine answered {e.status}"
    return None
