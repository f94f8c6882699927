"""Where documents come in: ``POST /api/v0.1/docs/<index>``, and the Elasticsearch ``_bulk`` API.

The docs API accepts ``application/json`` (one object, as Logstash's ``format => "json"`` sends,
or an array of objects, as ``format => "json_batch"`` sends) and ``application/x-ndjson`` (one
object per line). A request is answered only after its documents were percolated and their hits
published; any failure on the way answers 4xx (the sender's fault: don't retry) or 503 (retry),
and nothing of a refused request is published. ``/_bulk`` answers item by item (beater.bulk).
Either takes a gzip body (``Content-Encoding: gzip``).
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from io import BytesIO
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Request

from beater import compat, otlp, probes
from beater.bulk import MAX_ID_BYTES, BulkItem, parse_bulk
from beater.compat import Compat
from beater.delivery import RouterUnavailable
from beater.documents import (
    JSON_TYPES,
    NDJSON_TYPES,
    BadDocuments,
    TooManyDocuments,
    check_document,
    parse_documents,
)
from beater.engine import EngineUnavailable
from beater.indexes import InvalidIndex, check_index
from beater.pipeline import Misconfigured, Overloaded, Received, UnreadableDocuments
from beater.service import Beater
from estrom.http import (
    Branch,
    ByteBudget,
    GuardedSite,
    JsonResource,
    NotFound,
    answer_later,
    answered_or_gone,
    api_root,
    json_answer,
    principal_of,
    refuse_now,
    send_error,
    send_json,
)

T = TypeVar("T")

RETRY_AFTER = {"Retry-After": "1"}
# Bodies from ESTROM_OFF_REACTOR_BYTES on are gunzipped and parsed in a thread of the reactor's
# pool: a 10 MiB body takes the reactor's thread about a tenth of a second, while heartbeats,
# acknowledgements and small requests wait. In a thread, the interpreter hands the reactor its
# turn every few milliseconds (sys.getswitchinterval()). Smaller bodies are parsed at once: a
# thread costs more than they do. gzip packs JSON logs about tenfold: a gzipped body goes to a
# thread from a sixteenth of that size.
GZIP_RATIO = 16


class LimitedRequest(Request):
    """A request that stops storing its body past ``site.max_body_bytes`` bytes, and holds its
    bytes in the site's ``budget`` (ESTROM_MAX_BYTES_IN_FLIGHT) from the moment its length is
    known until it is answered: past the budget it is answered 429 at once, its body unread."""

    body_too_large = False
    over_budget = False
    _received = 0
    _held = 0
    _length: int | None = None
    _budget: ByteBudget
    _unknown = False

    def gotLength(self, length: int | None) -> None:
        # Twisted spools bodies over 100 kB to a temporary file; the limit bounds memory, so keep
        # the body in memory and spare the reactor blocking file I/O.
        self.content = BytesIO()
        # The headers are in: a sender without a valid token gets 401 without its body being kept.
        self._unknown = self.channel.site.authenticate(self) is None
        if self._unknown:
            return
        self._length = length
        # Kept here: a request whose connection is lost has no channel any more.
        self._budget = self.channel.site.budget
        self.notifyFinish().addBoth(self._give_back)
        # From Content-Length, before a byte of the body is read.
        if length is not None and length <= self.channel.site.max_body_bytes and not self.hold(length):
            self._refuse_now()

    def hold(self, count: int) -> bool:
        """Hold ``count`` more bytes for this request in the site's budget, if there is room;
        whether they are held."""
        if self._budget.take(count):
            self._held += count
            return True
        return False

    def over_budget_message(self) -> str:
        held = self._budget.held
        return f"Beater holds {held} bytes of requests already (ESTROM_MAX_BYTES_IN_FLIGHT): retry"

    def _refuse_now(self) -> None:
        """429 while the body is still on its way: it is read, and dropped."""
        self.over_budget = True
        refuse_now(self, "429 Too Many Requests", self.over_budget_message(), RETRY_AFTER)

    def _give_back(self, result: Any) -> None:
        self._budget.give(self._held)
        self._held = 0

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.channel.site.max_body_bytes:
            self.body_too_large = True
            return
        if self._unknown or self.over_budget:
            return
        # A chunked body is held as its bytes arrive.
        if self._length is None and not self.hold(len(data)):
            self._refuse_now()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        if self.over_budget:  # answered already: the client closes, or LINGER_SECONDS do
            return
        # Every answer says which product it is: the official clients 8 and 9 refuse any other.
        self.setHeader(compat.PRODUCT_HEADER, compat.PRODUCT)
        super().process()

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        # JSON is answered in the versioned type the client's Accept asks for (beater.compat).
        if isinstance(name, bytes) and name.lower() == b"content-type" and value == b"application/json":
            value = compat.answer_type(self) or value
        super().setHeader(name, value)


class IngestSite(GuardedSite):
    requestFactory = LimitedRequest

    def __init__(
        self,
        resource: Resource,
        max_body_bytes: int,
        max_bytes_in_flight: int,
        off_reactor_bytes: int = 256 * 1024,
    ):
        super().__init__(resource)
        self.max_body_bytes = max_body_bytes
        self.off_reactor_bytes = off_reactor_bytes
        self.budget = ByteBudget(max_bytes_in_flight)


class DocsResource(Branch):
    """``/api/v0.1/docs``: one child per index."""

    def __init__(self, beater: Beater):
        super().__init__()
        self.beater = beater

    def getChild(self, name: bytes, request: Request) -> Resource:
        return IndexDocsResource(self.beater, _index_name(name))


class _Ingest(JsonResource):
    """Where documents for ``index`` (None: each names its own) are sent."""

    isLeaf = True
    allowedMethods = (b"POST",)
    content_types = JSON_TYPES + NDJSON_TYPES

    def __init__(self, beater: Beater, index: str | None):
        super().__init__()
        self.beater = beater
        self.index = index

    def render_POST(self, request: LimitedRequest) -> int:
        return answer_later(request, self.answer(request), "ingest")

    render_PUT = render_POST  # where allowed: _bulk

    async def answer(self, request: LimitedRequest) -> None:
        raise NotImplementedError

    async def read(self, request: LimitedRequest, parse: Callable[[bytes, str], T]) -> tuple[bytes, T] | None:
        """The body of ``request`` and ``parse(body, content type)``, gunzipped and parsed off the
        reactor's thread from ESTROM_OFF_REACTOR_BYTES on; None once a body that cannot be read was
        answered: 413 or 415, which the sender mends by sending it otherwise, or 422 for
        documents that will never be taken (see "Statuses, and shippers" in docs/api.md)."""
        try:
            body, content_type, gzipped = request_body(request, self.content_types)
            site = request.channel.site
            limit = site.max_body_bytes

            def unpack() -> tuple[bytes, T]:
                plain = gunzip(body, limit) if gzipped else body
                return plain, parse(plain, content_type)

            if len(body) * (GZIP_RATIO if gzipped else 1) >= site.off_reactor_bytes:
                plain, parsed = await deferToThread(unpack)
            else:
                plain, parsed = unpack()
            if gzipped and not request.hold(len(plain)):  # the gunzipped copy is held too
                raise UnreadableBody(429, request.over_budget_message(), RETRY_AFTER)
            return plain, parsed
        except UnreadableBody as e:
            send_error(request, e.status, str(e), e.headers)
        except TooManyDocuments as e:
            send_error(request, 413, str(e))
        except BadDocuments as e:
            send_error(request, 422, str(e))
        return None


class IndexDocsResource(_Ingest):
    async def answer(self, request: LimitedRequest) -> None:
        if request.postpath:
            send_error(request, 404, "POST documents to /api/v0.1/docs/<index>")
            return
        index = self.allowed_index(request)
        if index is None:
            return
        started = time.perf_counter()
        read = await self.read(
            request, lambda body, kind: parse_documents(body, kind, self.beater.document_limits)
        )
        if read is None:
            return
        body, documents = read
        parsed = time.perf_counter()
        counts = await self.ingest(request, Received(index, documents, len(body)))
        if counts is not None:
            delivered = time.perf_counter()
            send_json(request, 200, counts)
            stages = self.beater.metrics.stages
            stages.labels("parse").observe(parsed - started)
            stages.labels("pipeline").observe(delivered - parsed)
            stages.labels("answer").observe(time.perf_counter() - delivered)

    def allowed_index(self, request: LimitedRequest) -> str | None:
        """The index of this path, if the sender may send to it; else None, answered why not."""
        if self.index is None:
            send_error(request, 400, "the index name is not UTF-8")
            return None
        try:
            index = check_index(self.index, self.beater.index_patterns)
        except InvalidIndex as e:
            send_error(request, 400, str(e))
            return None
        principal = principal_of(request)
        if not principal.may_send(index):
            send_error(request, 403, f"the token {principal.name!r} may not send to the index {index!r}")
            return None
        return index

    async def ingest(self, request: LimitedRequest, received: Received) -> dict[str, int] | None:
        """Percolate and publish the documents ``received``: their counts, or None once
        ``request`` was answered with why not (a status a sender that retries mends, or not)."""
        index, documents = received.index, received.documents
        try:
            counts = await self.beater.ingest(received)
        except UnreadableDocuments as e:
            self.beater.metrics.refused(index, len(documents), 422)
            send_error(request, 422, f"the search engine refused the documents: {e}")
            return None
        except Misconfigured as e:
            self.beater.metrics.refused(index, len(documents), 500)
            send_error(request, 500, f"{e} (a misconfiguration, logged): not the sender's to mend")
            return None
        except Overloaded as e:
            self.beater.metrics.refused(index, len(documents), 429)
            # Logstash's http output retries on 429 (and 503): nothing is lost, memory stays flat.
            send_error(request, 429, f"{e}: retry later", RETRY_AFTER)
            return None
        except (EngineUnavailable, RouterUnavailable) as e:
            self.beater.metrics.refused(index, len(documents), 503)
            send_error(request, 503, str(e), RETRY_AFTER)
            return None
        self.beater.metrics.took(index, len(documents))
        return counts


class DocResource(IndexDocsResource):
    """The engine's document APIs, as the clients' ``index()`` and ``create()`` call them:
    ``POST /<index>/_doc`` (Beater names it), ``PUT``/``POST /<index>/_doc/<id>`` and
    ``/<index>/_create/<id>``: one JSON object, answered 201 as the engine answers."""

    allowedMethods = (b"POST", b"PUT")

    def __init__(self, beater: Beater, index: str | None, compat: Compat, action: str):
        super().__init__(beater, index)
        self.compat, self.action = compat, action

    async def answer(self, request: LimitedRequest) -> None:
        given = request.postpath[0] if request.postpath and request.postpath[0] else None
        if len(request.postpath) > 1 or (
            given is None and (self.action == "create" or request.method == b"PUT")
        ):
            send_error(
                request, 404 if len(request.postpath) > 1 else 405, f"{self.action}: use /<index>/_doc/<id>"
            )
            return
        document_id = _index_name(given) if given is not None else uuid.uuid4().hex
        if not document_id or len(document_id.encode()) > MAX_ID_BYTES:
            send_error(request, 400, f"a document's _id is UTF-8 text of 1 to {MAX_ID_BYTES} bytes")
            return
        index = self.allowed_index(request)
        if index is None:
            return
        read = await self.read(
            request,
            lambda body, kind: _one_document(parse_documents(body, kind, self.beater.document_limits)),
        )
        if read is None:
            return
        body, documents = read
        if (
            await self.ingest(
                request, Received(index, documents, len(body), [document_id], [given is not None])
            )
            is None
        ):
            return
        answer = {
            "_index": index,
            "_id": document_id,
            "_version": 1,
            "result": "created",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": 0,
            "_primary_term": 1,
        }
        send_json(request, 201, self.compat.bulk_item(answer))


class OtlpLogsResource(_Ingest):
    """``POST /v1/logs``: OpenTelemetry logs over OTLP/HTTP (beater.otlp), protobuf or JSON. Every
    record taken is percolated and published; those that cannot be (an index Beater does not
    serve or the token may not send to, a document it refuses) are the answer's partial success.
    When none can be taken for a reason a retry mends, 429 or 503 (the exporters retry them)."""

    content_types = (otlp.PROTOBUF, otlp.JSON)

    def __init__(self, beater: Beater, index_template: str):
        super().__init__(beater, None)
        try:
            index_template.format(dataset="d", namespace="n")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"ESTROM_OTLP_INDEX may name {{dataset}} and {{namespace}}: {e}") from None
        self.index_template = index_template

    async def answer(self, request: LimitedRequest) -> None:
        if request.postpath and request.postpath != [b""]:
            send_error(request, 404, "POST OTLP logs to /v1/logs")
            return
        beater, content_type = self.beater, _content_type(request)[0]
        content_type = otlp.JSON if content_type != otlp.PROTOBUF else otlp.PROTOBUF

        def decode(body: bytes, kind: str) -> otlp.Records:
            try:
                records = otlp.documents(otlp.parse(body, kind), self.index_template, time.time())
            except otlp.BadOtlp as e:
                raise BadDocuments(str(e)) from None
            count = sum(map(len, records.by_index.values()))
            if count > beater.document_limits.max_documents:
                raise TooManyDocuments(
                    f"more than {beater.document_limits.max_documents} log records in one request"
                )
            return records

        read = await self.read(request, decode)
        if read is None:
            return
        body, records = read
        principal = principal_of(request)
        taken: dict[str, list[dict]] = {}
        for index, documents in records.by_index.items():
            try:
                index = check_index(index, beater.index_patterns)
            except InvalidIndex as e:
                for _ in documents:
                    records.reject(str(e))
                continue
            if not principal.may_send(index):
                for _ in documents:
                    records.reject(f"the token {principal.name!r} may not send to the index {index!r}")
                continue
            for position, document in enumerate(documents):
                try:
                    check_document(document, f"log record {position} for {index}: ", beater.document_limits)
                except BadDocuments as e:
                    records.reject(str(e))
                    continue
                taken.setdefault(index, []).append(document)
        size = len(body)
        outcomes = await DeferredList(
            [
                Deferred.fromCoroutine(beater.ingest(Received(index, group, size, each=True)))
                for index, group in taken.items()
            ],
            consumeErrors=True,
        )
        retry: list[Exception] = []
        for (ok, outcome), (index, group) in zip(outcomes, taken.items(), strict=True):
            if ok:
                beater.metrics.took(index, outcome["accepted"])
                errors = list(outcome.refused.values())
            else:  # none of the group taken
                errors = [outcome.value] * len(group)
            for error in errors:
                if isinstance(error, (Overloaded, EngineUnavailable, RouterUnavailable)):
                    retry.append(error)
                else:  # the engine refused it, or a misconfiguration: never taken
                    records.reject(f"the search engine refused the record: {error}")
        if retry:
            # Not taken, and a retry mends it: the whole request again (a group taken meanwhile
            # arrives twice: OTLP has no IDs to tell; docs/limits.md).
            status = 429 if all(isinstance(e, Overloaded) for e in retry) else 503
            send_error(request, status, f"{retry[0]}: retry", RETRY_AFTER)
            return
        if answered_or_gone(request):
            return
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", content_type.encode())
        request.write(otlp.answer(records.rejected, "; ".join(records.reasons), content_type))
        request.finish()


def _one_document(documents: list[dict]) -> list[dict]:
    if len(documents) != 1:
        raise BadDocuments("the document API takes one JSON object")
    return documents


class IngestRoot(JsonResource):
    """``/``: Beater's API (``/api/v0.1/docs/<index>``), and the Elasticsearch endpoints that
    shippers speak: ``/_bulk``, ``/<index>/_bulk``, and ``GET /`` (which version they talk to)."""

    def __init__(self, beater: Beater, compat: Compat | None = None, otlp_index: str = otlp.DEFAULT_INDEX):
        super().__init__()
        self.beater = beater
        self.compat = compat = compat or Compat()
        self.putChild(b"api", api_root(DocsResource(beater)).children[b"api"])
        self.putChild(b"_bulk", BulkResource(beater, None, compat))
        self.otlp = OtlpLogsResource(beater, otlp_index)
        # What shippers ask before they send (beater.probes).
        self.putChild(b"_license", probes.License())
        self.putChild(b"_xpack", probes.XPack())
        for kind in ("index_template", "template", "component_template"):
            self.putChild(f"_{kind}".encode(), probes.Templates(kind.replace("_", " ")))
        self.putChild(b"_ilm", probes.Lifecycle())
        self.putChild(b"_data_stream", probes.DataStreams())
        for branch, answer in ((b"_cat", "line"), (b"_cluster", "object")):
            self.putChild(branch, Branch())
            self.children[branch].putChild(b"health", _Health(beater, answer))

    def getChildWithDefault(self, name: bytes, request: Request) -> Resource:
        # An index may be named as Beater's own paths are (api, healthz, readyz, metrics):
        # followed by one of the engine's endpoints (_bulk, _doc, _create), the name is the
        # index's; alone, or followed by anything else, the path is Beater's.
        if not name.startswith(b"_") and request.postpath and request.postpath[0].startswith(b"_"):
            return self.getChild(name, request)
        return super().getChildWithDefault(name, request)

    def getChild(self, name: bytes, request: Request) -> Resource:
        if name == b"" and not request.postpath:
            return self
        return _IndexBranch(self.beater, name, self.compat, self.otlp)

    def render_GET(self, request: Request) -> bytes:
        # Shippers read "version.number" to choose how to talk; the clients 8 and 9 check the
        # product (beater.compat).
        return json_answer(request, 200, self.compat.info())


class _Health(JsonResource):
    """``/_cat/health`` (rsyslog's omelasticsearch asks it, HEAD, before it sends) and
    ``/_cluster/health`` (other shippers' health check): as the engine answers them, 200, and
    green while Beater is connected to the router, red while not."""

    isLeaf = True

    def __init__(self, beater: Beater, answer: str):
        super().__init__()
        self.beater, self.answer = beater, answer

    def render_GET(self, request: Request) -> bytes:
        status = "green" if self.beater.session is not None else "red"
        if self.answer == "object":
            body: Any = {"cluster_name": "estrom", "status": status, "timed_out": False, "number_of_nodes": 1}
        elif request.args.get(b"format") == [b"json"]:
            body = [{"cluster": "estrom", "status": status}]
        else:
            now = time.time()
            request.setHeader(b"Content-Type", b"text/plain; charset=UTF-8")
            return f"{int(now)} {time.strftime('%H:%M:%S', time.gmtime(now))} estrom {status}\n".encode(
                "ascii"
            )
        return json_answer(request, 200, body)


class _IndexBranch(Branch):
    """``/<index>``: ``/<index>/_bulk``, ``/<index>/_doc[/<id>]`` and ``/<index>/_create/<id>``."""

    def __init__(self, beater: Beater, name: bytes, compat: Compat, otlp_logs: Resource):
        super().__init__()
        self.beater, self.name, self.compat, self.otlp_logs = beater, name, compat, otlp_logs

    def getChild(self, name: bytes, request: Request) -> Resource:
        if self.name == b"v1" and name == b"logs":  # OTLP/HTTP; an index named v1 keeps the rest
            return self.otlp_logs
        if name == b"_bulk":
            return BulkResource(self.beater, _index_name(self.name), self.compat)
        if name in (b"_doc", b"_create"):
            return DocResource(self.beater, _index_name(self.name), self.compat, name[1:].decode())
        return NotFound()


class BulkResource(_Ingest):
    """``POST``/``PUT`` ``/_bulk`` and ``/<index>/_bulk``: the engine's ``_bulk``, its answer
    item by item. An item is 201 once percolated and published (as a 2xx of the docs API);
    when no item could be taken for a reason a retry can mend (429, 503), the whole request
    gets that status, so that shippers that read only the status retry it."""

    allowedMethods = (b"POST", b"PUT")

    def __init__(self, beater: Beater, index: str | None, compat: Compat | None = None):
        super().__init__(beater, index)
        self.compat = compat or Compat()

    async def answer(self, request: LimitedRequest) -> None:
        started = time.monotonic()
        if request.postpath and request.postpath != [b""]:
            send_error(request, 404, "POST _bulk bodies to /_bulk or /<index>/_bulk")
            return
        beater = self.beater
        read = await self.read(
            request,
            lambda body, _: parse_bulk(body, self.index, beater.document_limits, beater.index_patterns),
        )
        if read is None:
            return
        _, items = read
        principal = principal_of(request)
        taken: dict[str, list[BulkItem]] = {}
        allowed: dict[str, bool] = {}  # by index: a request names few, and has up to 10,000 items
        for item in items:
            if not item.status and not allowed.setdefault(item.index, principal.may_send(item.index)):
                item.refuse(
                    403,
                    "security_exception",
                    f"the token {principal.name!r} may not send to the index {item.index!r}",
                )
            if not item.status:
                taken.setdefault(item.index, []).append(item)
        await DeferredList(
            [Deferred.fromCoroutine(self._ingest(index, group)) for index, group in taken.items()],
            consumeErrors=True,
        )
        # Counted by index and status, not one metric update per item.
        for (index, status), count in Counter(
            (item.index or "", item.status) for item in items if item.status is not None
        ).items():
            if status < 300:
                beater.metrics.took(index, count)
            else:
                beater.metrics.refused(index, count, status)
        statuses = {item.status for item in items}
        if statuses <= {429, 503}:  # nothing taken, and a retry may take it all
            status = 503 if 503 in statuses else 429
            send_error(request, status, items[0].reason, RETRY_AFTER)
            return
        send_json(
            request,
            200,
            {
                "took": round((time.monotonic() - started) * 1000),
                "errors": any(item.status >= 300 for item in items),
                "items": [
                    {action: self.compat.bulk_item(result)}
                    for item in items
                    for action, result in item.answer().items()
                ],
            },
        )

    async def _ingest(self, index: str, items: list[BulkItem]) -> None:
        """Ingest the items of one index together, document by document, as the engine does:
        each gets its own outcome as its status (the pipeline finds those the engine refuses)."""
        try:
            counts = await self.beater.ingest(
                Received(
                    index,
                    [item.document for item in items],
                    sum(item.size for item in items),
                    [item.id for item in items],
                    [item.named for item in items],
                    each=True,
                )
            )
        except _NOT_TAKEN as e:
            _refuse(items, *_item_status(e))
            return
        for position, item in enumerate(items):
            error = counts.refused.get(position)
            if error is None:
                item.status = 201
            else:
                item.refuse(*_item_status(error))


# Why documents were not taken: the sender's, a misconfiguration, or a moment's.
_NOT_TAKEN = (UnreadableDocuments, Misconfigured, Overloaded, EngineUnavailable, RouterUnavailable)


def _item_status(error: Exception) -> tuple[int, str, str]:
    """A bulk item's status, error type and reason for a document not taken because of ``error``."""
    if isinstance(error, UnreadableDocuments):
        return 400, "mapper_parsing_exception", f"the search engine refused it: {error}"
    if isinstance(error, Misconfigured):
        return 500, "illegal_state_exception", f"{error} (a misconfiguration, logged)"
    if isinstance(error, Overloaded):
        return 429, "es_rejected_execution_exception", f"{error}: retry later"
    return 503, "unavailable_exception", str(error)


def _refuse(items: list[BulkItem], status: int, error_type: str, reason: str) -> None:
    for item in items:
        item.refuse(status, error_type, reason)


def _index_name(segment: bytes) -> str | None:
    """A path segment as an index name (percent-decoded, as Tailor's ``i=`` is), or None."""
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        return None


class UnreadableBody(Exception):
    """A request body estrom cannot read: the status to answer, and why."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


def request_body(request: LimitedRequest, content_types: tuple[str, ...]) -> tuple[bytes, str, bool]:
    """The body of ``request`` as sent, its content type, and whether it is gzipped (to
    gunzip); raise UnreadableBody."""
    limit = request.channel.site.max_body_bytes
    if request.body_too_large:
        raise UnreadableBody(413, f"the body is larger than {limit} bytes")
    content_type, charset = _content_type(request)
    try:
        content_type = compat.plain_type(content_type, _content_params(request))
    except compat.MediaTypeError as e:
        raise UnreadableBody(400, str(e)) from None
    if content_type not in content_types:
        raise UnreadableBody(
            415, f"unsupported Content-Type '{content_type}': use application/json or application/x-ndjson"
        )
    if charset not in (None, "utf-8", "utf8"):
        raise UnreadableBody(415, f"unsupported charset '{charset}': use utf-8")
    body = request.content.getvalue()
    encoding = (request.getHeader(b"content-encoding") or b"identity").decode("latin-1").strip().lower()
    if encoding not in ("gzip", "identity"):
        raise UnreadableBody(415, f"unsupported Content-Encoding '{encoding[:100]}': use gzip or none")
    return body, content_type, encoding == "gzip"


def gunzip(body: bytes, limit: int) -> bytes:
    """``body`` gunzipped (every member), refused past ``limit`` bytes: a few kB of gzip can
    stand for gigabytes."""
    parts, size, rest = [], 0, body
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as e:
            raise UnreadableBody(400, f"the body is not valid gzip: {e}") from None
        size += len(part)
        if size > limit:
            raise UnreadableBody(413, f"the body is larger than {limit} bytes once gunzipped")
        if not inflater.eof:
            raise UnreadableBody(400, "the body is not valid gzip: it ends before its last member does")
        parts.append(part)
        rest = inflater.unused_data
    return b"".join(parts)


def _content_params(request: Request) -> str:
    return (request.getHeader(b"content-type") or b"").decode("latin-1").partition(";")[2]


def _content_type(request: Request) -> tuple[str, str | None]:
    header = (request.getHeader(b"content-type") or b"").decode("latin-1")
    kind, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset":
            charset = value.strip().strip('"').lower()
    return kind.strip().lower(), charset
