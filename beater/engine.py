"""The search engine's REST API, over treq, with plain ``application/json``.

The official ``elasticsearch`` client is not used on purpose: it refuses OpenSearch, and each of
its majors talks to one server major only, while the few endpoints the percolator needs are the
same on Elasticsearch 7/8/9 and OpenSearch 1/2/3.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import treq
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError, TimeoutError
from twisted.web._newclient import RequestTransmissionFailed, ResponseFailed, ResponseNeverReceived

_UNREACHABLE = (
    ConnectError,
    ConnectionLost,
    DNSLookupError,
    TimeoutError,
    ResponseFailed,
    ResponseNeverReceived,
    RequestTransmissionFailed,
)


class EngineUnavailable(Exception):
    """The engine did not answer, or answered that it cannot serve now (5xx)."""


class EngineError(Exception):
    """The engine refused a request (4xx); ``reason`` is its own explanation."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        self.type, self.reason = _reason(body)
        super().__init__(f"{status} {self.type}: {self.reason}")


def _reason(body: Any) -> tuple[str, str]:
    """The innermost (most specific) cause the engine gave."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "error", str(error or body)
    while isinstance(error.get("caused_by"), dict):
        error = error["caused_by"]
    return str(error.get("type", "error")), str(error.get("reason", ""))


class Engine:
    """A search engine node or cluster at ``url``."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    async def request(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        """Send one request; fire with the decoded JSON answer of a 2xx response.

        Raises EngineUnavailable when nothing answers or the answer is a 5xx, EngineError for
        any other non-2xx answer.
        """
        data = None if body is None else json.dumps(body).encode("utf-8")
        try:
            response = await treq.request(
                method,
                self.url + path,
                data=data,
                params=params,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                timeout=self.timeout,
            )
            content = await response.content()
        except _UNREACHABLE as e:
            raise EngineUnavailable(f"search engine at {self.url} unreachable: {e}") from e
        try:
            answer = json.loads(content) if content else None
        except ValueError:
            answer = {"error": content.decode("utf-8", "replace")[:500]}
        # 429: the engine's queues are full (rejected execution): busy, not a bad request.
        if response.code >= 500 or response.code == 429:
            raise EngineUnavailable(f"search engine answered {response.code}: {_reason(answer)[1]}")
        if response.code >= 400:
            raise EngineError(response.code, answer)
        return answer


def path(*segments: str) -> str:
    """A URL path from raw segments (index names, IDs), each percent-encoded."""
    return "".join("/" + quote(segment, safe="") for segment in segments)
