"""The Elasticsearch ``_bulk`` body, as shippers send it: NDJSON action and source line pairs.

Each item is read on its own: a bad action, index, ID or document refuses that item (its own
status, as the engine's ``_bulk`` answers), never the request. ``index`` and ``create`` are
taken; ``update`` and ``delete`` are refused (estrom keeps no document to change), ``delete``
without a source line after it, as the engine reads it. Only a body that is not a ``_bulk`` body
at all (empty, more items than a request may carry) is refused whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from beater.documents import (
    CBOR_PER_JSON_BYTE,
    DEFAULT_DOCUMENT_LIMITS,
    BadDocuments,
    DocumentLimits,
    TooManyDocuments,
    check_document,
    check_size,
    loads,
    new_ids,
)
from beater.indexes import InvalidIndex, check_index

ACTIONS = ("index", "create", "update", "delete")
TAKEN = ("index", "create")
MAX_ID_BYTES = 512  # the engine's limit for a document's _id

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass
class BulkItem:
    """One action of a ``_bulk`` body: a document to ingest, or (``status`` set) a refusal."""

    action: str
    index: str | None = None
    id: str | None = None
    named: bool = False  # the id is the sender's, not made here
    document: dict | None = None
    size: int = 0  # bytes of its source line
    status: int = 0
    error_type: str = ""
    reason: str = ""

    def refuse(self, status: int, error_type: str, reason: str) -> None:
        self.status, self.error_type, self.reason = status, error_type, reason

    def answer(self) -> dict[str, Any]:
        """The item as the engine's ``_bulk`` response has it."""
        if self.status and self.status >= 300:
            result: dict[str, Any] = {
                "_index": self.index,
                "_id": self.id,
                "status": self.status,
                "error": {"type": self.error_type, "reason": self.reason},
            }
        else:
            result = {
                "_index": self.index,
                "_id": self.id,
                "_version": 1,
                "result": "created",
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": 0,
                "_primary_term": 1,
                "status": 201,
            }
        return {self.action if self.action in ACTIONS else "index": result}


def parse_bulk(
    body: bytes,
    default_index: str | None,
    limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS,
    patterns: tuple[str, ...] = ("*",),
) -> list[BulkItem]:
    """The items of ``body``; those to ingest have a ``document`` and an ``id`` (made here when
    the action names none). Raises BadDocuments (TooManyDocuments) for a body refused whole."""
    lines = body.split(b"\n")
    items: list[BulkItem] = []
    at = 0
    while at < len(lines):
        line, number = lines[at].rstrip(b"\r"), at + 1
        at += 1
        if not line.strip():
            continue
        if len(items) >= limits.max_documents:
            raise TooManyDocuments(f"more than {limits.max_documents} items in one request")
        item = _action(line, number, default_index, patterns)
        items.append(item)
        if item.action in ACTIONS and item.action not in TAKEN and not item.status:
            item.refuse(
                400,
                "illegal_argument_exception",
                f"line {number}: estrom does not support '{item.action}': it keeps no document to "
                "change; send 'index' or 'create'",
            )
        if item.action == "delete":
            continue  # no source line follows
        source = lines[at].rstrip(b"\r") if at < len(lines) else b""
        at += 1
        item.size = len(source)
        if not item.status:
            _source(item, source, number + 1, limits)
    if not items:
        raise BadDocuments("the body is empty: a _bulk body is action and document lines (NDJSON)")
    return items


def _action(line: bytes, number: int, default_index: str | None, patterns: tuple[str, ...]) -> BulkItem:
    where = f"line {number}: "
    try:
        value = loads(line.decode("utf-8"), where)
    except (UnicodeDecodeError, BadDocuments) as e:
        item = BulkItem("")
        item.refuse(400, "illegal_argument_exception", f"malformed action line: {_reason(e, where)}")
        return item
    if not (isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), dict)):
        item = BulkItem("")
        item.refuse(
            400,
            "illegal_argument_exception",
            f"{where}malformed action line: expected one of {', '.join(ACTIONS)} with an object of metadata",
        )
        return item
    ((action, metadata),) = value.items()
    item = BulkItem(action if action in ACTIONS else "")
    if not item.action:
        item.refuse(400, "illegal_argument_exception", f"{where}unknown action '{str(action)[:100]}'")
        return item
    index = metadata.get("_index", default_index)
    item.index = index if isinstance(index, str) else None
    try:
        item.index = check_index(index, patterns)
    except InvalidIndex as e:
        item.refuse(400, "invalid_index_name_exception", f"{where}{e}")
        return item
    given = metadata.get("_id")
    if given is None:
        item.id = new_ids(1)[0]
    elif isinstance(given, (str, int)) and not isinstance(given, bool) and str(given):
        item.id, item.named = str(given), True
        if len(item.id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
            item.id = None
            item.refuse(400, "illegal_argument_exception", f"{where}_id is longer than {MAX_ID_BYTES} bytes")
    else:
        item.refuse(400, "illegal_argument_exception", f"{where}_id must be a non-empty string")
    return item


def _source(item: BulkItem, line: bytes, number: int, limits: DocumentLimits) -> None:
    where = f"line {number}: "
    if not line.strip():
        item.refuse(400, "mapper_parsing_exception", f"{where}the document is missing after its action line")
        return
    try:
        document = check_document(
            loads(line.decode("utf-8"), where), where, limits, _SURROGATE_ESCAPE.search(line) is not None
        )
        if limits.max_encoded_bytes is not None and len(line) * CBOR_PER_JSON_BYTE > limits.max_encoded_bytes:
            check_size(document, where, limits.max_encoded_bytes)
    except (UnicodeDecodeError, BadDocuments) as e:
        item.refuse(400, "mapper_parsing_exception", _reason(e, where))
        return
    item.document = document


def _reason(error: Exception, where: str) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"{where}not UTF-8 (byte {error.start})"
    return str(error)
