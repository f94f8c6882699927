"""A document its sender named, sent again (the sender did not hear it was taken): a stream that
had it is not given it twice, live or from a backlog; one that never had it gets it once."""

from __future__ import annotations

import json

import pytest_twisted

from estrom import api
from estrom.clients import HttpStream, post


def bulk(index: str, documents: list[tuple[str | None, dict]], action: str = "index") -> bytes:
    lines = []
    for document_id, document in documents:
        lines.append({action: {"_index": index, **({"_id": document_id} if document_id else {})}})
        lines.append(document)
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


async def send(stack, index: str, documents: list[tuple[str | None, dict]]) -> None:
    status, answer = await post(f"{stack.beater_url}/_bulk", bulk(index, documents), "application/x-ndjson")
    assert status == 200 and answer["errors"] is False, answer


async def tail(stack, index: str, **params) -> HttpStream:
    stream = await HttpStream.open(stack.tailor_url, i=index, q="service:api", **params)
    await stream.wait_for_head()
    return stream


@pytest_twisted.ensureDeferred
async def test_a_named_documents_resend_reaches_each_stream_once(stored, index):
    stack = stored
    throughout = await tail(stack, index)
    request = [("order-1", {"service": "api", "n": 1}), (None, {"service": "api", "n": 2})]
    await send(stack, index, request)
    first = await throughout.wait_for_hits(2)
    assert first[0]["_id"] == "order-1" and first[0][api.NAMED] is True
    assert api.NAMED not in first[1]  # made by Beater: a resend of it cannot be told apart
    opened_since = await tail(stack, index)
    resumed_after_it = await tail(stack, index, after=first[0]["_cursor"])

    await send(stack, index, request)  # the sender did not hear the answer, and sends it again
    await send(stack, index, [(None, {"service": "api", "n": 3})])

    def numbers(stream: HttpStream) -> list:
        return [hit["_source"]["n"] for hit in stream.hits]

    await throughout.wait_for_hits(4)
    assert numbers(throughout) == [1, 2, 2, 3]  # the unnamed one twice: at least once
    await opened_since.wait_for_hits(3)
    assert numbers(opened_since) == [1, 2, 3]  # it never had order-1
    # Its backlog holds order-1's latest copy (the store keeps one per _id): its client had it.
    await resumed_after_it.wait_for_hits(3)
    assert numbers(resumed_after_it) == [2, 2, 3]
    for stream in (throughout, opened_since, resumed_after_it):
        stream.close()
