"""One call per key at a time; a failure reaches every caller and wedges nothing."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, fail, succeed

from estrom.coalesce import Coalesce


def test_callers_of_one_key_share_one_call_and_each_gets_the_outcome():
    calls: list[Deferred] = []
    coalesce = Coalesce()

    def start() -> Deferred:
        calls.append(Deferred())
        return calls[-1]

    first, second = coalesce.run("k", start), coalesce.run("k", start)
    other = coalesce.run("j", start)
    assert len(calls) == 2 and "k" in coalesce
    calls[0].callback("stored")
    assert (first.result, second.result) == ("stored", "stored")
    assert not other.called and "k" not in coalesce


def test_a_failure_reaches_every_waiter_and_the_next_caller_starts_afresh():
    coalesce = Coalesce()
    pending: Deferred = Deferred()
    first, second = coalesce.run("k", lambda: pending), coalesce.run("k", lambda: pending)
    pending.errback(RuntimeError("engine gone"))
    for waiter in (first, second):
        failures = []
        waiter.addErrback(failures.append)
        assert failures[0].check(RuntimeError)
    assert coalesce.run("k", lambda: succeed("again")).result == "again"
    failed = coalesce.run("k", lambda: fail(ValueError("at once")))
    failed.addErrback(lambda failure: failure.trap(ValueError))
    with pytest.raises(ZeroDivisionError):
        coalesce.run("k", lambda: 1 / 0)
    assert "k" not in coalesce
