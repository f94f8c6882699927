"""Nothing lost across faults: with the store on, a sender that resends on 429/503 as Logstash
does, and streams that reconnect after their last cursor, the engine, the router, Beater and
Tailor are each restarted in turn, while documents keep coming. Every document the sender got a
2xx for must arrive at every stream exactly once. The sender names its documents (`_bulk` with
an `_id`, as Logstash's elasticsearch output with a `document_id`): a resend of a request whose
answer was lost (Beater killed while answering) is then known, where an unnamed one arrives
twice (docs/limits.md).

`make test` runs it on OpenSearch at 200 documents/s with 20 streams; `make faults` on both
engines at 500/s (ESTROM_FAULTS_RATE, ESTROM_FAULTS_STREAMS, ESTROM_FAULTS_ENGINES)."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from estrom.clients import ResendingSender, ResumingReader, eventually, settle
from tests.conftest import STORE

RATE = int(os.environ.get("ESTROM_FAULTS_RATE", "200"))  # documents per second
STREAMS = int(os.environ.get("ESTROM_FAULTS_STREAMS", "20"))
FAULTS = ("engine", "router", "beater", "tailor")

pytestmark = pytest.mark.parametrize(
    "stack", os.environ.get("ESTROM_FAULTS_ENGINES", "opensearch").split(","), indirect=True
)


@pytest_twisted.ensureDeferred
async def test_every_document_taken_arrives_once_at_every_stream_across_restarts(stored, index):
    stack = stored
    readers = [ResumingReader(stack.tailor_url, index) for _ in range(STREAMS)]
    reading = [Deferred.fromCoroutine(reader.run()) for reader in readers]
    await eventually(lambda: all(r.connections for r in readers), what="every stream open")
    sender = ResendingSender(stack.beater_url, RATE, index)
    sending = Deferred.fromCoroutine(sender.run())
    try:
        for part in FAULTS:
            taken = len(sender.taken)
            await eventually(
                lambda t=taken: len(sender.taken) >= t + RATE,
                timeout=90,
                what=f"documents taken before {part}",
            )
            refused = sender.refused()
            await deferToThread(stack.stop, part)
            if part == "tailor":
                await eventually(lambda: all(r.lost() for r in readers), what="the streams to lose Tailor")
            else:
                await eventually(
                    lambda r=refused: sender.refused() > r, what=f"the sender to meet the {part} fault"
                )
            await deferToThread(lambda p=part: stack.start(p, **(STORE if p == "beater" else {})))
    finally:
        figures = await settle(sender, sending, readers, reading, "faults")
    assert figures["missing per stream"] == [0]
    assert figures["duplicates per stream"] == [0]
    assert figures["gaps said"] == 0
