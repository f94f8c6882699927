"""JSON answers for the HTTP services: every error a user can cause is ``{"error": "..."}``."""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request


def send_json(request: Request, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
    """Answer ``request`` with ``body`` as JSON, unless the client has already gone."""
    if request.finished or request._disconnected:
        return
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in (headers or {}).items():
        request.setHeader(name.encode(), value.encode())
    request.write(json.dumps(body).encode("utf-8") + b"\n")
    request.finish()


def send_error(request: Request, code: int, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer ``request`` with ``{"error": message}``."""
    send_json(request, code, {"error": message}, headers)


class NotFound(Resource):
    """A JSON 404 for every path that is not the API's, instead of Twisted's HTML page."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"application/json")
        return b'{"error": "not found: the API is at /api/v0.1/docs"}\n'


class _Branch(Resource):
    def getChild(self, name: bytes, request: Request) -> Resource:
        return NotFound()

    def render(self, request: Request) -> bytes:
        return NotFound().render(request)


def only(method: bytes, request: Request) -> bytes | None:
    """A JSON 405 if ``request`` is not ``method``, else None."""
    if request.method == method:
        return None
    request.setResponseCode(405)
    request.setHeader(b"Allow", method)
    request.setHeader(b"Content-Type", b"application/json")
    return b'{"error": "method not allowed: use %s"}\n' % method


def api_root(docs: Resource) -> Resource:
    """The resource tree of a service: ``docs`` at ``/api/v0.1/docs``."""
    root, api, version = _Branch(), _Branch(), _Branch()
    root.putChild(b"api", api)
    api.putChild(b"v0.1", version)
    version.putChild(b"docs", docs)
    return root
