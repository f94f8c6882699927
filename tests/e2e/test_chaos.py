"""Chaos, with nothing lost: with the store on, a sender that resends on 429/503 as Logstash
does (naming its documents, as Logstash's elasticsearch output with a document_id), and streams that reconnect after their last cursor, a part picked at random (the engine,
the router, Beater or Tailor) is killed with SIGKILL at a random time, and started again a
random moment later, for the whole run. Every document the sender got a 2xx for must arrive at
every stream exactly once.

`make chaos` runs 10 minutes at 500 documents/s on both engines, with a random seed (printed;
ESTROM_CHAOS_SEED=N repeats a run's choices);
`make test` a seeded run of 60 s at 200/s on OpenSearch (ESTROM_CHAOS_SECONDS, _RATE, _STREAMS,
_SEED, _ENGINES)."""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from estrom.clients import ResendingSender, ResumingReader, eventually, pause, scrape, settle
from tests.conftest import STORE

SECONDS = float(os.environ.get("ESTROM_CHAOS_SECONDS", "60"))
RATE = int(os.environ.get("ESTROM_CHAOS_RATE", "200"))  # documents per second
STREAMS = int(os.environ.get("ESTROM_CHAOS_STREAMS", "20"))
# 14: its first four kills are of each part once (router, engine, Tailor, Beater).
_SEED = os.environ.get("ESTROM_CHAOS_SEED", "14")
SEED = random.SystemRandom().randrange(2**32) if _SEED == "random" else int(_SEED)
PARTS = ("engine", "router", "beater", "tailor")
BETWEEN = (3.0, 12.0)  # seconds from a part's start to the next kill
DOWN = (0.0, 3.0)  # seconds a killed part stays down
# A stream away while the router is down and starts again (several seconds) must find what it
# missed in a backlog: ESTROM_MAX_BACKLOG holds 40 s at 500 documents/s.
CHAOS_STORE = {**STORE, "ESTROM_MAX_BACKLOG": "20000"}

pytestmark = pytest.mark.parametrize(
    "stack", os.environ.get("ESTROM_CHAOS_ENGINES", "opensearch").split(","), indirect=True
)


@pytest_twisted.ensureDeferred
async def test_every_document_taken_arrives_once_at_every_stream_while_parts_are_killed(stored, index):
    stack = stored
    await deferToThread(lambda: (stack.stop("beater"), stack.start_beater(**CHAOS_STORE)))
    try:
        await _chaos(stack, index)
    finally:  # as the other tests of the store have it
        await deferToThread(lambda: (stack.stop("beater"), stack.start_beater(**STORE)))


async def _chaos(stack, index: str) -> None:
    chance = random.Random(SEED)
    readers = [ResumingReader(stack.tailor_url, index) for _ in range(STREAMS)]
    reading = [Deferred.fromCoroutine(reader.run()) for reader in readers]
    await eventually(lambda: all(r.connections for r in readers), what="every stream open")
    # Named documents: a resend of a request that was published but not answered (Beater killed
    # while answering, the router gone before it acknowledged) is then known for what it is.
    sender = ResendingSender(stack.beater_url, RATE, index)
    sending = Deferred.fromCoroutine(sender.run())
    kills: Counter = Counter()
    try:
        ends = reactor.seconds() + SECONDS
        while reactor.seconds() < ends:
            await pause(chance.uniform(*BETWEEN))
            part = chance.choice(PARTS)
            await deferToThread(stack.kill, part)
            kills[part] += 1
            await pause(chance.uniform(*DOWN))
            await deferToThread(lambda p=part: stack.start(p, **(CHAOS_STORE if p == "beater" else {})))
    finally:
        more = {"seed": SEED, "seconds": SECONDS, "kills": kills}
        figures = await settle(sender, sending, readers, reading, "chaos", more)
        skipped = await scrape(stack.tailor_url)
        print(
            "chaos: copies Tailor kept from streams that had them, since it last started:",
            skipped[("estrom_resends_skipped_total", ())],
        )
    assert figures["missing per stream"] == [0]
    assert figures["duplicates per stream"] == [0]
    assert figures["gaps said"] == 0
