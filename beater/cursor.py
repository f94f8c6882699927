"""Beater's cursors (their layout: estrom.cursor), and the times streams ask from.

One Beater's cursors only grow: it takes them for a batch in the order its batches publish, and
when its clock steps back it goes on from the last millisecond it used. Several Beaters' cursors
interleave by their clocks: they order hits across Beaters only as well as the clocks agree.
"""

from __future__ import annotations

import datetime
import re
import secrets

from twisted.internet import reactor as default_reactor
from twisted.internet.interfaces import IReactorTime

from estrom.cursor import SEQUENCE, make_cursor, new_node


class Cursors:
    def __init__(self, clock: IReactorTime = default_reactor, node: int | None = None):
        self._clock = clock
        self.node = new_node(secrets.randbits(16) if node is None else node)
        self._ms = 0
        self._next = 0  # the next sequence number within self._ms

    def now(self) -> float:
        return self._clock.seconds()

    def take(self, count: int) -> list[str]:
        """``count`` cursors, each greater than any taken before."""
        now = int(self._clock.seconds() * 1000)
        if now > self._ms:
            self._ms, self._next = now, 0
        cursors = []
        for _ in range(count):
            if self._next == SEQUENCE:  # borrow the next millisecond
                self._ms, self._next = self._ms + 1, 0
            cursors.append(make_cursor(self._ms, self._next, self.node))
            self._next += 1
        return cursors


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """Seconds since the epoch from ``text``: a duration back from ``now`` (``90s``, ``5m``,
    ``1h``, ``2d``, as ``logcli --since`` takes them) or an ISO 8601 time (UTC unless it says
    otherwise). ValueError says what is wrong."""
    text = text.strip()
    if len(text) > 64:
        raise ValueError("'since' must be a duration such as 90s, 5m, 1h or 2d, or an ISO 8601 time")
    duration = _DURATION.fullmatch(text)
    if duration:
        return now - float(duration.group(1)) * _UNIT[duration.group(2)]
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"'since' must be a duration such as 90s, 5m, 1h or 2d, or an ISO 8601 time; not {text[:40]!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()
