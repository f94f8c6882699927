"""One call per key at a time, whoever asks: Beater stores a query once however many clients
register it at the same moment, and Tailor subscribes to a topic once however many streams open
on it. Nothing is locked: a call that fails fails for the callers that waited for it, and the
next caller starts afresh."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class Coalesce:
    def __init__(self) -> None:
        self._waiting: dict[Hashable, list[Deferred]] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._waiting

    def run(self, key: Hashable, start: Callable[[], Deferred]) -> Deferred[Any]:
        """Fire with the outcome of ``start()``, or of the call already running for ``key``.

        If ``start`` raises, so does this, and nothing is left behind for ``key``.
        """
        mine: Deferred[Any] = Deferred()
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(mine)
            return mine
        started = start()
        self._waiting[key] = [mine]
        started.addBoth(self._done, key)  # may fire at once
        return mine

    def _done(self, result: Any, key: Hashable) -> None:
        for waiter in self._waiting.pop(key):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
