"""Work done again and again (the sweep of stored queries, the token file's watcher) that goes on
when one round fails.

Twisted's ``LoopingCall`` stops for good on the first exception of its function, and says so only
to its own Deferred: a watcher that stopped would leave removed tokens valid, a sweep that
stopped would keep unused queries forever, and nothing would look wrong. A ``Repeating`` logs
each failed round, counts it (``failures``, and each of ``on_failure`` is called with its name,
for a metric), and runs the next at its time.

The standard library and Twisted only: the router's worker imports it (through estrom/tokens.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class Repeating:
    """``work`` (a function, sync or async) every ``interval`` seconds, from ``start()`` until
    ``stop()``; a round that raises is logged and counted, and the loop goes on. Rounds never
    overlap: the next is due ``interval`` after the start of one that has ended."""

    def __init__(
        self, name: str, work: Callable[[], Awaitable[Any] | Any], interval: float, clock: Any = reactor
    ):
        self.name = name
        self.interval = interval
        self.failures = 0
        self.on_failure: list[Callable[[str], Any]] = []
        self._work = work
        self._loop = LoopingCall(self._round)
        self._loop.clock = clock

    @property
    def running(self) -> bool:
        return self._loop.running

    def start(self, now: bool = False) -> None:
        # _round never fails, so this Deferred fires only when stop() is called.
        self._loop.start(self.interval, now=now)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _round(self) -> Deferred[None] | None:
        try:
            result = self._work()
        except Exception:  # noqa: BLE001 - any failure of a round is logged, counted, survived
            self._failed(Failure())
            return None
        if not isinstance(result, Deferred) and not hasattr(result, "__await__"):
            return None
        return ensureDeferred(result).addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        self.failures += 1
        log.failure(
            "the loop {name}: a round failed ({failures} so far); the next runs in {interval} s",
            failure,
            name=self.name,
            failures=self.failures,
            interval=self.interval,
        )
        for call in self.on_failure:
            try:
                call(self.name)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the loop
                log.failure("the loop {name}: counting a failure failed", name=self.name)
