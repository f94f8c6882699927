"""``/healthz`` and ``/readyz`` of Beater and Tailor (estrom/health.py)."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from beater.engine import Engine, engine_answers
from estrom.health import CHECK_EVERY, Readyz


@pytest_twisted.ensureDeferred
async def test_a_flood_of_probes_runs_each_check_once_per_second():
    calls, gate = [], Deferred()

    async def engine() -> str | None:
        calls.append("engine")
        await gate
        return None

    async def router() -> str | None:
        calls.append("router")
        return "not joined to the router"

    now = Clock()  # seconds() is the time
    now.advance(100)
    ready = Readyz({"engine": engine, "router": router}, clock=now.seconds)
    probes = [Deferred.fromCoroutine(ready.outcome()) for _ in range(100)]
    gate.callback(None)
    outcomes = [await probe for probe in probes]
    assert outcomes[0] == {"engine": "ok", "router": "not joined to the router"}
    assert all(outcome == outcomes[0] for outcome in outcomes)
    assert calls == ["engine", "router"]
    now.advance(CHECK_EVERY / 2)
    await ready.outcome()
    assert len(calls) == 2
    now.advance(CHECK_EVERY)
    await ready.outcome()
    assert len(calls) == 4


@pytest_twisted.ensureDeferred
async def test_beater_says_the_engine_does_not_answer_without_naming_it():
    said = await engine_answers(Engine("http://127.0.0.1:1", 5.0))
    assert said == "the search engine does not answer"


# /readyz when the router is gone: tests/e2e/test_outages.py::test_router_restart.
