"""What an ingest body may carry: checked before anything acts on it (no engine needed)."""

from __future__ import annotations

import json

import cbor2
import pytest

from beater.documents import (
    CBOR_PER_JSON_BYTE,
    BadDocuments,
    DocumentLimits,
    DocumentTooLarge,
    TooManyDocuments,
    new_ids,
    parse_documents,
)


def refused(body: bytes, content_type: str = "application/json", **limits) -> str:
    with pytest.raises(BadDocuments) as raised:
        parse_documents(body, content_type, DocumentLimits(**limits))
    return str(raised.value)


@pytest.mark.parametrize(
    "body, reason",
    [
        # The percolator index's own fields: a document must never be read with their mapping.
        (
            b'{"estrom_query": {"terms": {"f": {"index": "x", "id": "1", "path": "p"}}}}',
            "field 'estrom_query'",
        ),
        (b'[{"ok": 1}, {"estrom_all": "x"}]', "item 2: field 'estrom_all' is reserved"),
        (b'{"estrom_query.match_all": {}}', "field 'estrom_query.match_all' is reserved"),
        # Python reads a lone surrogate into a string that cannot be encoded to be published.
        (b'[{"ok": 1}, {"msg": "\\ud800"}]', "item 2: a string holds a lone UTF-16 surrogate"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": 1e999}', "1e999 is too large for a number (a double)"),
        (b'[{"a": 1}, {"b": -1E+309}]', "-1E+309 is too large for a number (a double)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_documents_estrom_cannot_pass_on_are_refused_saying_where(body, reason):
    assert reason in refused(body)


def test_documents_are_read_exactly_as_sent():
    """msgspec reads bodies (beater.documents.loads); what it gives must be what the standard
    library gives: integers of any size stay integers (orjson would make floats of them)."""
    body = (
        b'[{"big": 123456789012345678901234567890, "u64": 18446744073709551616, "neg": -9223372036854775809,'
        b' "f": 0.1, "e": 1.5e300, "z": -0.0, "tiny": 1e-400, "s": "caf\\u00e9 \\ud83d\\ude00 \\u0000",'
        b' "dup": 1, "dup": 2, "n": null, "t": true, "a": [[], {}]}]'
    )
    (document,) = parse_documents(body, "application/json", DocumentLimits())
    assert document == json.loads(body)[0]
    assert type(document["big"]) is int and document["big"] == 123456789012345678901234567890
    assert document["dup"] == 2 and str(document["z"]) == "-0.0" and document["tiny"] == 0.0


def test_nesting_is_bounded_in_objects_and_arrays():
    deep = json.dumps({"a": [[{"b": [[1]]}]]}).encode()  # 6 levels
    assert parse_documents(deep, "application/json", DocumentLimits(max_depth=6))
    assert "nested deeper than 5 levels" in refused(deep, max_depth=5)
    ndjson = b'{"ok": 1}\n' + deep
    assert "line 2: objects and arrays nested deeper" in refused(ndjson, "application/x-ndjson", max_depth=5)


def test_documents_per_request_are_bounded():
    body = json.dumps([{"n": n} for n in range(11)]).encode()
    assert len(parse_documents(body, "application/json", DocumentLimits(max_documents=11))) == 11
    with pytest.raises(TooManyDocuments, match="more than 10 documents"):
        parse_documents(body, "application/json", DocumentLimits(max_documents=10))
    lines = b"\n".join(b'{"n": 1}' for _ in range(11))
    with pytest.raises(TooManyDocuments):
        parse_documents(lines, "application/x-ndjson", DocumentLimits(max_documents=10))


@pytest.mark.parametrize(
    "document",
    [
        {"f": [1e5] * 300},  # a float: 4 bytes of JSON ("1e5,"), 9 of CBOR
        {"s": "x" * 3000},
        {"deep": {"a": [{"b": "y" * 1000}, 2.5, True, None]}, "i": list(range(500))},
    ],
    ids=["floats", "string", "mixed"],
)
def test_a_document_larger_than_the_router_carries_is_refused_saying_which(document):
    published = len(cbor2.dumps(document))  # what Beater publishes: CBOR
    assert published <= len(json.dumps(document, separators=(",", ":"))) * CBOR_PER_JSON_BYTE
    small = {"ok": 1}
    body = json.dumps([small, document]).encode()
    assert parse_documents(body, "application/json", DocumentLimits(max_encoded_bytes=published))
    with pytest.raises(DocumentTooLarge, match=f"item 2: the document is {published} bytes as published"):
        parse_documents(body, "application/json", DocumentLimits(max_encoded_bytes=published - 1))
    lines = b"\n\n".join(json.dumps(d).encode() for d in (small, document))
    with pytest.raises(DocumentTooLarge, match="line 3: "):
        parse_documents(lines, "application/x-ndjson", DocumentLimits(max_encoded_bytes=published - 1))


def test_what_is_fine_passes_unchanged():
    body = '[{"msg": "😀 \\ud83d\\ude00", "a.estrom_query": 1, "nested": {"estrom_x": 2}}]'.encode()
    assert parse_documents(body, "application/json") == [
        {"msg": "😀 😀", "a.estrom_query": 1, "nested": {"estrom_x": 2}}
    ]


def test_new_ids_are_distinct_128_bit_hex():
    ids = new_ids(1000)
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert new_ids(0) == []
