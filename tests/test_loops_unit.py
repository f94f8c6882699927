"""A loop's round that fails is logged and counted, and the loop goes on (estrom/loops.py): the
sweep of stored queries and the token file's watcher never stop for good."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from estrom import tokens
from estrom.loops import Repeating


class _Rounds:
    """A loop's work whose rounds fail as told."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.ran = 0

    def __call__(self):
        self.ran += 1
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "raise":
            raise RuntimeError("a bug in a round")
        if outcome == "fail":
            return fail(KeyError("an answer without the expected field"))
        return succeed(None)


def _logged(events: list) -> list[str]:
    return [event.get("log_format", "") for event in events if event.get("log_failure") is not None]


def test_a_round_that_raises_or_fails_is_logged_counted_and_the_loop_goes_on():
    clock = Clock()
    work = _Rounds(["raise", "fail", "ok", "raise"])
    loop = Repeating("sweep", work, 10, clock)
    counted: list[str] = []
    loop.on_failure.append(counted.append)
    events: list = []
    globalLogPublisher.addObserver(events.append)
    try:
        loop.start()
        for _ in range(5):
            clock.advance(10)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert work.ran == 5  # no round stopped it
    assert loop.failures == 3
    assert counted == ["sweep", "sweep", "sweep"]
    assert len(_logged(events)) == 3
    assert loop.running
    loop.stop()
    assert not loop.running


def test_rounds_never_overlap_and_the_next_is_due_after_one_ends():
    clock = Clock()
    pending: list[Deferred] = []

    def work():
        pending.append(Deferred())
        return pending[-1]

    loop = Repeating("slow", work, 1, clock)
    loop.start()
    clock.advance(1)
    clock.advance(5)  # the first round is still running
    assert len(pending) == 1
    pending[0].errback(RuntimeError("late failure"))
    clock.advance(1)
    assert len(pending) == 2 and loop.failures == 1
    loop.stop()


def test_a_broken_failure_listener_does_not_stop_the_loop():
    clock = Clock()
    loop = Repeating("sweep", _Rounds(["raise", "raise"]), 1, clock)
    loop.on_failure.append(lambda name: 1 / 0)
    loop.start()
    clock.advance(1)
    clock.advance(1)
    assert loop.failures == 2 and loop.running
    loop.stop()


@pytest_twisted.ensureDeferred
async def test_the_token_watcher_goes_on_after_a_round_fails_and_cuts_a_removed_token_off(
    tmp_path, monkeypatch
):
    path = tmp_path / "tokens.toml"
    alice = tokens.new_token()
    path.write_text(tokens.entry("alice", alice, read=["*"]))
    watched = tokens.TokenFile(path, interval=0.05)
    real, broken = tokens.signature, [True]

    def signature(where):
        if broken:
            broken.clear()
            raise OSError("the file system went away for a moment")
        return real(where)

    monkeypatch.setattr(tokens, "signature", signature)
    failed, changed = Deferred(), Deferred()
    watched.watcher.on_failure.append(lambda name: failed.called or failed.callback(name))
    watched.on_change.append(lambda names: changed.called or changed.callback(names))
    watched.watch()
    try:
        assert await failed.addTimeout(10, reactor) == "token_file"
        path.write_text("")  # alice's token is removed: the watcher still sees it
        assert await changed.addTimeout(10, reactor) == {"alice"}
        assert watched.check(alice) is None
        assert watched.watcher.failures == 1
    finally:
        watched.watcher.stop()
