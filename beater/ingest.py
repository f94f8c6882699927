"""Where documents come in: ``POST /api/v0.1/docs/<index>``.

Accepts ``application/json`` (one object, as Logstash's ``format => "json"`` sends, or an array
of objects, as ``format => "json_batch"`` sends) and ``application/x-ndjson`` (one object per
line). A request is answered only after its documents were percolated and their hits published;
any failure on the way answers 4xx (the sender's fault: don't retry) or 503 (retry), and nothing
of a refused request is published.
"""

from __future__ import annotations

from io import BytesIO
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from beater.documents import JSON_TYPES, NDJSON_TYPES, BadDocuments, TooManyDocuments, parse_documents
from beater.engine import EngineUnavailable
from beater.percolator import InvalidIndex, check_index
from beater.pipeline import Overloaded, Rejected
from beater.service import Beater, RouterUnavailable
from estrom.http import GuardedSite, NotFound, only, send_error, send_json

log = Logger()

RETRY_AFTER = {"Retry-After": "1"}


class LimitedRequest(Request):
    """A request that stops storing its body past ``site.max_body_bytes`` bytes."""

    body_too_large = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        # Twisted spools bodies over 100 kB to a temporary file; the limit bounds memory, so keep
        # the body in memory and spare the reactor blocking file I/O.
        self.content = BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.channel.site.max_body_bytes:
            self.body_too_large = True
            return
        super().handleContentChunk(data)


class IngestSite(GuardedSite):
    requestFactory = LimitedRequest

    def __init__(self, resource: Resource, max_body_bytes: int):
        super().__init__(resource)
        self.max_body_bytes = max_body_bytes


class DocsResource(Resource):
    """``/api/v0.1/docs``: one child per index."""

    def __init__(self, beater: Beater):
        super().__init__()
        self.beater = beater

    def getChild(self, name: bytes, request: Request) -> Resource:
        # The path segment is percent-encoded, as Tailor's `i=` is: decode it the same way.
        try:
            index = unquote_to_bytes(name).decode("utf-8")
        except UnicodeDecodeError:
            index = None
        return IndexDocsResource(self.beater, index)

    def render(self, request: Request) -> bytes:
        return NotFound().render(request)


class IndexDocsResource(Resource):
    isLeaf = True

    def __init__(self, beater: Beater, index: str | None):
        super().__init__()
        self.beater = beater
        self.index = index

    def render(self, request: LimitedRequest) -> bytes | int:
        return only(b"POST", request) or super().render(request)

    def render_POST(self, request: LimitedRequest) -> int:
        Deferred.fromCoroutine(self._ingest(request)).addErrback(
            lambda failure: (
                log.failure("ingest failed", failure),
                send_error(request, 500, "internal error"),
            )
        )
        return NOT_DONE_YET

    async def _ingest(self, request: LimitedRequest) -> None:
        if request.postpath:
            return send_error(request, 404, "POST documents to /api/v0.1/docs/<index>")
        if self.index is None:
            return send_error(request, 400, "the index name is not UTF-8")
        try:
            index = check_index(self.index, self.beater.index_patterns)
        except InvalidIndex as e:
            return send_error(request, 400, str(e))
        if request.body_too_large:
            limit = request.channel.site.max_body_bytes
            return send_error(request, 413, f"the body is larger than {limit} bytes")
        content_type, charset = _content_type(request)
        if content_type not in JSON_TYPES + NDJSON_TYPES:
            return send_error(
                request,
                415,
                f"unsupported Content-Type '{content_type}': use application/json or application/x-ndjson",
            )
        if charset not in (None, "utf-8", "utf8"):
            return send_error(request, 415, f"unsupported charset '{charset}': use utf-8")
        body = request.content.getvalue()
        try:
            documents = parse_documents(body, content_type, self.beater.document_limits)
        except TooManyDocuments as e:
            return send_error(request, 413, str(e))
        except BadDocuments as e:
            return send_error(request, 400, str(e))
        try:
            counts = await self.beater.ingest(index, documents, len(body))
        except Rejected as e:
            return send_error(request, 400, f"the search engine refused the documents: {e}")
        except Overloaded as e:
            # Logstash's http output retries on 429 (and 503): nothing is lost, memory stays flat.
            return send_error(request, 429, f"{e}: retry later", RETRY_AFTER)
        except (EngineUnavailable, RouterUnavailable) as e:
            return send_error(request, 503, str(e), RETRY_AFTER)
        send_json(request, 200, counts)


def _content_type(request: Request) -> tuple[str, str | None]:
    header = (request.getHeader(b"content-type") or b"").decode("latin-1")
    kind, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset":
            charset = value.strip().strip('"').lower()
    return kind.strip().lower(), charset
