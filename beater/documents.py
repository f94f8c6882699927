"""What an ingest request carries: documents, parsed and checked before anything acts on them.

Each document is a JSON object; a request is refused whole (422, naming the item or line) when
any of its documents is not one, or is one estrom cannot pass on: a field in estrom's own
namespace, a string with a lone UTF-16 surrogate (it cannot be encoded again to be published),
nesting deeper than the limit, NaN/Infinity (not JSON, and not readable by the engine), or
larger, encoded as Beater publishes it, than the router carries in a message; and (413) when it
carries more documents than a request may.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import cbor2
import msgspec

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonlines")


def new_ids(count: int) -> list[str]:
    """``count`` document IDs: 128 random bits each, as 32 hex digits (as ``uuid4().hex`` is,
    without its version bits), from one read of the system's random source instead of one per
    document (2.4 µs of CPU per document with uuid4, 0.14 µs so)."""
    digits = os.urandom(16 * count).hex()
    return [digits[start : start + 32] for start in range(0, 32 * count, 32)]


class BadDocuments(ValueError):
    """The body is not documents; the message says why (and where)."""


class TooManyDocuments(BadDocuments):
    """More documents in one request than allowed (413)."""


class DocumentTooLarge(BadDocuments):
    """A document larger, encoded for the router, than the router carries in a message."""


@dataclass(frozen=True)
class DocumentLimits:
    """How many documents a request may carry, and how deep each may be."""

    max_documents: int = 10_000
    max_depth: int = 64
    max_encoded_bytes: int | None = None  # one document, as CBOR (what Beater publishes)


DEFAULT_DOCUMENT_LIMITS = DocumentLimits()

# A `\uD800`-`\uDFFF` escape: a UTF-16 surrogate, which Python's json reads into a string that
# cannot be encoded again when it is lone. Raw UTF-8 cannot hold one (decoding refuses it).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

# Field names of estrom's own in the percolator index (see beater.indexes): a document field
# named like them would be read with their mapping (the query field parses its value as a query).
RESERVED_PREFIX = "estrom_"

# The most bytes of CBOR one byte of JSON can become: a float takes 9, and at least 4 as JSON
# ("1e5,"); strings, names, integers, true/false/null and brackets take no more than as JSON.
CBOR_PER_JSON_BYTE = 3


def parse_documents(
    body: bytes, content_type: str, limits: DocumentLimits = DEFAULT_DOCUMENT_LIMITS
) -> list[dict]:
    """The documents in ``body``; raise BadDocuments naming the problem (and where it is)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadDocuments(f"the body is not UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise BadDocuments("the body is empty")
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    wheres: list[str] = []
    if content_type in NDJSON_TYPES:
        documents = []
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                if len(documents) >= limits.max_documents:
                    raise TooManyDocuments(f"more than {limits.max_documents} documents in one request")
                wheres.append(f"line {number}: ")
                documents.append(check_document(loads(line, wheres[-1]), wheres[-1], limits, surrogates))
    else:
        value = loads(text, "")
        if isinstance(value, list):
            if not value:
                raise BadDocuments("the array is empty")
            if len(value) > limits.max_documents:
                raise TooManyDocuments(f"more than {limits.max_documents} documents in one request")
            wheres = [f"item {number}: " for number in range(1, len(value) + 1)]
            documents = [
                check_document(item, where, limits, surrogates)
                for item, where in zip(value, wheres, strict=True)
            ]
        else:
            wheres, documents = [""], [check_document(value, "", limits, surrogates)]
    limit = limits.max_encoded_bytes
    if limit is not None and len(body) * CBOR_PER_JSON_BYTE > limit:  # else none can be too large
        for document, where in zip(documents, wheres, strict=True):
            check_size(document, where, limit)
    return documents


def check_size(document: dict, where: str, limit: int) -> None:
    """Raise DocumentTooLarge if ``document`` is more than ``limit`` bytes as published."""
    size = len(cbor2.dumps(document))
    if size > limit:
        raise DocumentTooLarge(
            f"{where}the document is {size} bytes as published, more than the {limit} "
            "the router carries in one message"
        )


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    # json.loads("1e999") is inf, and parse_constant sees only the spellings NaN and Infinity.
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is too large for a number (a double)")
    return number


# msgspec's decoder reads a request body's JSON 2 to 12 times faster than the standard library
# (bench/codecs.py), and as exactly: integers of any size stay integers (orjson makes floats of
# those past 64 bits). What it refuses is read again by the standard library, which says why in
# the words senders get, or takes it (a lone surrogate escape, refused by check_document).
_decode = msgspec.json.Decoder().decode


def loads(text: str, where: str) -> Any:
    try:
        return _decode(text)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_finite)
    except RecursionError:
        raise BadDocuments(f"{where}nested too deeply") from None
    except ValueError as e:
        raise BadDocuments(f"{where}not valid JSON: {e}") from None


def check_document(value: Any, where: str, limits: DocumentLimits, surrogates: bool = True) -> dict:
    """``value`` if it is a document estrom can pass on; else raise BadDocuments saying why
    (``where`` first). ``surrogates``: whether its text may hold a UTF-16 surrogate escape."""
    if not isinstance(value, dict):
        raise BadDocuments(f"{where}a document is a JSON object, not {type(value).__name__}")
    for name in value:
        if name.split(".", 1)[0].startswith(RESERVED_PREFIX):
            raise BadDocuments(
                f"{where}field '{name}' is reserved: names starting with '{RESERVED_PREFIX}' are estrom's own"
            )
    _check_depth(value, where, limits.max_depth)
    if surrogates:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadDocuments(
                f"{where}a string holds a lone UTF-16 surrogate ({e.object[e.start]!r}), which is not text"
            ) from None
    return value


def _check_depth(document: dict, where: str, max_depth: int) -> None:
    """Refuse objects and arrays nested deeper than ``max_depth``; never recurses.

    The router and its clients decode what Beater publishes with decoders that refuse deep
    nesting (CBOR: 400 levels) and drop the connection that carried it; the engine refuses
    deep objects too. ``type() is`` rather than ``isinstance``: this runs over every value.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        container, depth = stack.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is dict or kind is list:
                if depth >= max_depth:
                    raise BadDocuments(f"{where}objects and arrays nested deeper than {max_depth} levels")
                stack.append((item, depth + 1))
