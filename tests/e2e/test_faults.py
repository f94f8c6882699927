"""Nothing lost across faults: with the store on, a sender that resends on 429/503 as Logstash
does, and streams that reconnect after their last cursor, the engine, the router, Beater and
Tailor are each restarted in turn, while documents keep coming. Every document the sender got a
2xx for must arrive at every stream exactly once.

`make test` runs it on OpenSearch at 200 documents/s with 20 streams; `make faults` on both
engines at 500/s (ESTROM_FAULTS_RATE, ESTROM_FAULTS_STREAMS, ESTROM_FAULTS_ENGINES)."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from estrom.testing import HttpStream, eventually, post
from tests.conftest import STORE

RATE = int(os.environ.get("ESTROM_FAULTS_RATE", "200"))  # documents per second
STREAMS = int(os.environ.get("ESTROM_FAULTS_STREAMS", "20"))
REQUESTS_PER_SECOND = 10  # each of RATE / 10 documents, as a shipper's batches
FAULTS = ("engine", "router", "beater", "tailor")

pytestmark = pytest.mark.parametrize(
    "stack", os.environ.get("ESTROM_FAULTS_ENGINES", "opensearch").split(","), indirect=True
)


def pause(seconds: float) -> Deferred:
    return deferLater(reactor, seconds, lambda: None)


class Sender:
    """Sends RATE documents a second, numbered, in batches; resends a batch answered 429 or 503
    (or not answered) until it is taken, as Logstash's http output does."""

    def __init__(self, url: str):
        self.url = url
        self.running = True
        self.taken: set[int] = set()  # numbers of the documents answered 2xx
        self.sent = 0
        self.answers: Counter = Counter()

    def refused(self) -> int:
        """Requests answered otherwise than 200 (or not answered) so far."""
        return sum(count for status, count in self.answers.items() if status != 200)

    async def run(self) -> None:
        size = max(1, RATE // REQUESTS_PER_SECOND)
        number = 0
        while self.running:
            started = reactor.seconds()
            batch = list(range(number, number + size))
            number += size
            delay = 0.1
            while True:
                self.sent += len(batch)
                try:
                    status, _ = await post(self.url, [{"service": "api", "n": n} for n in batch])
                except Exception:  # noqa: BLE001 - refused, reset: Beater is away
                    status = "no answer"
                self.answers[status] += 1
                if status == 200:
                    self.taken.update(batch)
                    break
                assert status in (429, 503, "no answer"), status  # anything else is a bug
                await pause(delay)
                delay = min(delay * 2, 2.0)
            await pause(max(0.0, 1 / REQUESTS_PER_SECOND - (reactor.seconds() - started)))


class Reader:
    """A stream that reconnects after the cursor of the last hit it got."""

    def __init__(self, tailor_url: str, index: str):
        self.tailor_url = tailor_url
        self.index = index
        self.running = True
        self.numbers: list[int] = []
        self.cursor: str | None = None
        self.connections = 0
        self.gaps = 0
        self.stream: HttpStream | None = None

    async def run(self) -> None:
        while self.running:
            params = {"i": self.index, "q": "service:api"}
            if self.cursor is not None:
                params["after"] = self.cursor
            try:
                stream = self.stream = await HttpStream.open(self.tailor_url, on_hit=self._hit, **params)
            except Exception:  # noqa: BLE001 - Tailor is away
                await pause(0.2)
                continue
            if not self.running:  # stopped while it opened
                stream.close()
                break
            if stream.status != 200:
                await stream.wait_for(lambda s=stream: s.ended, "the error answer")
                await pause(0.2)
                continue
            self.connections += 1
            await stream.wait_for(lambda s=stream: s.ended, "the stream to end", timeout=3600)
            if b'"gap": true' in stream.raw.split(b'"hits"')[0]:
                self.gaps += 1

    def _hit(self, hit: dict) -> None:
        self.numbers.append(hit["_source"]["n"])
        self.cursor = hit["_cursor"]

    def lost(self) -> bool:
        """Whether the stream it had is gone (Tailor went away)."""
        return self.stream is None or self.stream.ended

    def stop(self) -> None:
        self.running = False
        if self.stream is not None:
            self.stream.close()


@pytest_twisted.ensureDeferred
async def test_every_document_taken_arrives_once_at_every_stream_across_restarts(stored, index):
    stack = stored
    readers = [Reader(stack.tailor_url, index) for _ in range(STREAMS)]
    reading = [Deferred.fromCoroutine(reader.run()) for reader in readers]
    await eventually(lambda: all(r.connections for r in readers), what="every stream open")
    sender = Sender(f"{stack.beater_url}/api/v0.1/docs/{index}")
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
            if part == "engine":
                await deferToThread(stack.start_engine)
            elif part == "router":
                await deferToThread(stack.start_router)
            elif part == "beater":
                await deferToThread(lambda: stack.start_beater(**STORE))
            else:
                await deferToThread(stack.start_tailor)
        taken = len(sender.taken)
        await eventually(
            lambda: len(sender.taken) >= taken + RATE, timeout=90, what="documents taken at the end"
        )
    finally:
        sender.running = False
        await sending
    try:
        await eventually(
            lambda: all(sender.taken <= set(r.numbers) for r in readers),
            timeout=60,
            what="every taken document at every stream",
        )
    finally:
        for reader in readers:
            reader.stop()
        await gatherResults(reading)
        figures = {
            "sent (with resends)": sender.sent,
            "taken (2xx)": len(sender.taken),
            "answers": {str(k): v for k, v in sender.answers.items()},
            "delivered per stream": sorted({len(r.numbers) for r in readers}),
            "missing per stream": sorted({len(sender.taken - set(r.numbers)) for r in readers}),
            "duplicates per stream": sorted({len(r.numbers) - len(set(r.numbers)) for r in readers}),
            "connections per stream": sorted({r.connections for r in readers}),
            "gaps said": sum(r.gaps for r in readers),
        }
        print("faults:", json.dumps(figures))
    for reader in readers:
        counted = Counter(reader.numbers)
        assert [n for n, c in counted.items() if c > 1 and n in sender.taken] == [], "duplicates"
    assert sum(r.gaps for r in readers) == 0
