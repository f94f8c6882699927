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


def api_root(docs: Resource) -> Resource:
    """The resource tree of a service: ``docs`` at ``/api/v0.1/docs``."""
    root, api, version = Resource(), Resource(), Resource()
    root.putChild(b"api", api)
    api.putChild(b"v0.1", version)
    version.putChild(b"docs", docs)
    return root
