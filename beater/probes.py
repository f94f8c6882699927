"""What shippers ask an Elasticsearch cluster before they send, answered so that they go on, or
with an error that says what to turn off.

Found by running them (docs/compatibility.md): Filebeat checks ``GET /_license`` (it refuses a
cluster without one), asks ``GET /_xpack`` whether index lifecycle management is there, then
loads its index template unless it exists. Beater says: a basic licence, no ILM (shippers then
write to plain indexes or data streams), and templates are taken but not kept (Beater maps
nothing for shippers: with the store, the engine maps documents as its own templates say).
ILM policies are refused, saying how to turn ILM off. Data streams are made when the first
document is written to one (beater.store).
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.web.server import Request

from estrom.http import JsonResource, json_answer

log = Logger()

_LICENSE = {
    "status": "active",
    "uid": "00000000-0000-0000-0000-000000000000",
    "type": "basic",
    "issue_date": "2026-01-01T00:00:00.000Z",
    "issue_date_in_millis": 1767225600000,
    "max_nodes": 1000,
    "max_resource_units": None,
    "issued_to": "estrom",
    "issuer": "elasticsearch",
    "start_date_in_millis": -1,
}


class License(JsonResource):
    """``GET /_license``: a basic licence, active."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return json_answer(request, 200, {"license": _LICENSE})


class XPack(JsonResource):
    """``GET /_xpack``: the licence, and no feature available (no ILM above all)."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        features = {
            name: {"available": False, "enabled": False}
            for name in ("ilm", "security", "monitoring", "ml", "watcher", "graph", "slm")
        }
        return json_answer(
            request,
            200,
            {
                "build": {"hash": "estrom", "date": "2026-01-01T00:00:00.000Z"},
                "license": {key: _LICENSE[key] for key in ("uid", "type", "status")}
                | {"mode": "basic", "expiry_date_in_millis": 4102444800000},
                "features": features,
                "tagline": "You know, for X",
            },
        )


class Templates(JsonResource):
    """``/_index_template/<name>``, ``/_template/<name>``, ``/_component_template/<name>``: none
    is found (404), and one put is taken but not kept (200, logged once per name)."""

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD", b"PUT", b"POST")

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self._said: set[str] = set()

    def render_GET(self, request: Request) -> bytes:
        name = _name(request)
        return json_answer(
            request, 404, {"error": f"{self.kind} [{name}] not found: estrom keeps none", "status": 404}
        )

    def render_PUT(self, request: Request) -> bytes:
        name = _name(request)
        if not name:
            return json_answer(request, 400, {"error": f"PUT /_{self.kind}/<name>", "status": 400})
        if name not in self._said and len(self._said) < 1000:
            self._said.add(name)
            log.info(
                "Beater: a sender put the {kind} {name}; taken, not kept (estrom maps nothing for senders)",
                kind=self.kind,
                name=name,
            )
        return json_answer(request, 200, {"acknowledged": True})

    render_POST = render_PUT


class Lifecycle(JsonResource):
    """``/_ilm/...``: no policy is found, and none is taken (400, saying how to turn ILM off)."""

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD", b"PUT", b"POST")

    def render_GET(self, request: Request) -> bytes:
        return json_answer(request, 404, {"error": "estrom has no index lifecycle management", "status": 404})

    def render_PUT(self, request: Request) -> bytes:
        return json_answer(
            request,
            400,
            {
                "error": "estrom has no index lifecycle management: turn it off in the sender "
                "(Filebeat: setup.ilm.enabled: false; Logstash: ilm_enabled => false)",
                "status": 400,
            },
        )

    render_POST = render_PUT


class DataStreams(JsonResource):
    """``/_data_stream/<name>``: made when the first document is written to it (with the store,
    as a data stream in the engine), so a ``PUT`` is acknowledged and a ``GET`` finds none."""

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD", b"PUT")

    def render_GET(self, request: Request) -> bytes:
        name = _name(request)
        return json_answer(
            request,
            404,
            {"error": f"data stream [{name}] not found: made by its first document", "status": 404},
        )

    def render_PUT(self, request: Request) -> bytes:
        return json_answer(request, 200, {"acknowledged": True})


def _name(request: Request) -> str:
    """The name after the endpoint (``/_template/<name>``), shortened for answers and logs."""
    return b"/".join(request.postpath).decode("utf-8", "replace")[:200]
