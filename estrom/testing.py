"""Test doubles, as treq ships treq.testing (estrom.clients has the real clients of a running
estrom): a search engine node that answers as a test scripts it, served through
``treq.testing.StubTreq`` so that Beater's engine client, and what stands on it (the Percolator,
the Store), run their error paths without Java, on a ``twisted.internet.task.Clock``::

    node = FakeEngine()
    node.answer("POST", "/_bulk", {"errors": True, "items": [...]})
    engine = Engine(FakeEngine.URL, http=StubTreq(node), clock=Clock())
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from twisted.web.resource import Resource
from twisted.web.server import Request

# A JSON body, or what a callable rule makes of the request's body: (status, body).
Answer = Any | Callable[[Any], tuple[int, Any]]


@dataclass(frozen=True)
class Seen:
    """A request the fake node received: its JSON body, or its NDJSON lines as a list."""

    method: str
    path: str
    body: Any
    params: dict[str, str]


def engine_error(kind: str, reason: str, caused_by: dict | None = None) -> dict[str, Any]:
    """An error body as the engine writes one."""
    error: dict[str, Any] = {"type": kind, "reason": reason}
    if caused_by is not None:
        error["caused_by"] = caused_by
    return {"error": {"root_cause": [dict(error)], **error}}


class FakeEngine(Resource):
    """A search engine node that answers what it is told.

    ``answer(method, path, body, status)``: a request whose method and path match (``path`` a
    shell pattern: ``/events/_doc/*``) is answered ``status`` with ``body`` as JSON, or with the
    (status, body) that ``body`` returns when it is callable (given the request's body). The
    latest rule that matches answers. A request no rule matches gets 404
    ``index_not_found_exception``, as from a node without that index. ``requests``: each one
    received, in turn.
    """

    URL = "http://engine.test:9200"
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self._rules: list[tuple[str, str, Answer, int]] = []
        self.requests: list[Seen] = []

    def answer(self, method: str, path: str, body: Answer = None, status: int = 200) -> None:
        self._rules.append((method, path, {} if body is None else body, status))

    def seen(self, method: str, path: str) -> list[Seen]:
        """The requests received whose method and path match (``path`` a shell pattern)."""
        return [r for r in self.requests if r.method == method and fnmatch.fnmatchcase(r.path, path)]

    def render(self, request: Request) -> bytes:
        method = request.method.decode()
        url = urlsplit(request.uri.decode())
        content = request.content.read()
        if request.getHeader("content-type") == "application/x-ndjson":
            body: Any = [json.loads(line) for line in content.splitlines() if line.strip()]
        else:
            body = json.loads(content) if content else None
        self.requests.append(Seen(method, url.path, body, dict(parse_qsl(url.query))))
        for rule_method, pattern, answer, status in reversed(self._rules):
            if rule_method == method and fnmatch.fnmatchcase(url.path, pattern):
                if callable(answer):
                    status, answer = answer(body)
                break
        else:
            status, answer = 404, engine_error("index_not_found_exception", f"no such index [{url.path}]")
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(answer).encode()
