"""Test doubles, as treq ships treq.testing (estrom.clients has the real clients of a running
estrom); time is Twisted's ``task.Clock``.

- ``FakeEngine``: a search engine node that answers as a test scripts it, served through
  ``treq.testing.StubTreq`` so that Beater's engine client, and what stands on it (the
  Percolator, the Store), run their error paths without Java::

      node = FakeEngine()
      node.answer("POST", "/_bulk", {"errors": True, "items": [...]})
      engine = Engine(FakeEngine.URL, http=StubTreq(node), clock=Clock())

- ``PublishingSession``: a joined WAMP session's ``publish``, as autobahn answers it, recorded.
- ``MatchingPercolator``: Beater's Percolator as delivery uses it, matching as the test says.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from twisted.internet.defer import Deferred, fail, succeed
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


class PublishingSession:
    """A joined WAMP session's ``publish`` as autobahn answers it: a Deferred for a publication
    that asks to be acknowledged (``acknowledgement``, which the test fires when ``held``; else
    at once), None for one that does not; with ``error``, every publication fails with it. Each
    is kept in ``made``: (topic, arguments, keyword arguments, options)."""

    def __init__(self, error: Exception | None = None, held: bool = False):
        self.error = error
        self.acknowledgement: Deferred | None = Deferred() if held else None
        self.made: list[tuple[str, list, dict, Any]] = []

    def publish(self, topic: str, *args: Any, options: Any = None, **kwargs: Any) -> Deferred | None:
        self.made.append((topic, list(args), kwargs, options))
        if self.error is not None:
            return fail(self.error)
        if options is None or not options.acknowledge:
            return None
        return self.acknowledgement if self.acknowledgement is not None else succeed(None)

    def acknowledged(self) -> list[tuple[str, bool]]:
        """Each publication's topic, and whether it asked to be acknowledged."""
        return [(topic, bool(options and options.acknowledge)) for topic, _, _, options in self.made]


class MatchingPercolator:
    """Beater's Percolator as delivery uses it, without an engine: a percolation matches as
    ``matches`` says (``{query_id: [positions]}``, or a function of the documents that gives
    one); the queries of ``highlighted`` (``{query_id: how}``) were registered for highlights,
    which are ``highlights`` (raised, if an exception). With ``held``, each percolation waits in
    ``pending`` until the test fires it with its matches. ``percolated``: each one's documents;
    ``elsewhere``: whether another Beater registered a query lately."""

    max_filter_terms = 10_000

    def __init__(
        self,
        matches: dict[str, list[int]] | Callable[[list[dict]], dict[str, list[int]]] | None = None,
        highlighted: dict[str, str] | None = None,
        highlights: dict | Exception | None = None,
        held: bool = False,
        elsewhere: bool = False,
    ):
        from beater.mapping import Mappings  # Beater's, as the Percolator it stands for

        self.matches = matches or {}
        self.highlighted = highlighted or {}
        self._highlights = highlights or {}
        self.held, self.elsewhere = held, elsewhere
        self.pending: list[Deferred] = []
        self.percolated: list[list[dict]] = []
        self.mappings = Mappings(engine=None)  # never asked without a store

    def percolate(self, index: str, documents: list[dict], only: list[str] | None = None) -> Deferred:
        from beater.percolator import Matches

        self.percolated.append(documents)
        if self.held:
            self.pending.append(Deferred())
            return self.pending[-1]
        found = Matches()
        found.update(self.matches(documents) if callable(self.matches) else self.matches)
        found.highlight.update(self.highlighted)
        return succeed(found)

    async def highlights(self, index: str, documents: list[dict], matches: Any) -> dict:
        if isinstance(self._highlights, Exception):
            raise self._highlights
        return self._highlights

    async def listened_elsewhere(self, index: str, besides: list[str]) -> bool:
        return self.elsewhere
