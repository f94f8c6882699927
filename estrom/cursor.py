"""The cursor's layout, in one place: where a hit stands among the hits of its index.

A cursor is 20 lowercase hex digits: the milliseconds since the Unix epoch when Beater took the
document's batch (12 digits), a sequence within that millisecond (4), and the Beater that took it
(4, drawn at random when it starts). Cursors compare as strings, also in the engine (a keyword
field) and in JavaScript, where a 64-bit number would lose digits. Beater makes them
(beater.cursor); Tailor, the aggregated tail and ``estrom tail`` read them with these helpers;
the page (router/web/estrom.js) reads the same layout in ``beaterOf`` and ``cursorMs``.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

CURSOR = re.compile(r"[0-9a-f]{20}")
SEQUENCE = 0x10000  # cursors per millisecond per Beater


def make_cursor(ms: int, sequence: int, node: str) -> str:
    """The cursor of the ``sequence``-th document of millisecond ``ms`` taken by Beater ``node``
    (4 hex digits)."""
    return f"{ms:012x}{sequence:04x}{node}"


def new_node(number: int) -> str:
    """A Beater's part of its cursors, from a number below 2**16."""
    return f"{number:04x}"


def node_of(cursor: Any) -> str | None:
    """The Beater that took the hit with ``cursor``, or None if it is not a cursor."""
    return cursor[16:] if isinstance(cursor, str) and len(cursor) == 20 else None


def cursor_ms(cursor: Any) -> int | None:
    """When the hit with ``cursor`` was taken, in milliseconds since the epoch (None: not a
    cursor)."""
    return int(cursor[:12], 16) if isinstance(cursor, str) and len(cursor) == 20 else None


def cursor_time(cursor: str) -> float:
    """When the hit with ``cursor`` was taken, in seconds since the epoch."""
    return int(cursor[:12], 16) / 1000


def cursor_at(seconds: float) -> str:
    """The least cursor of a time (seconds since the epoch): the hits taken from then on are
    the ones with a cursor at least this."""
    return f"{max(0, int(seconds * 1000)):012x}" + "0" * 8


def cursor_iso(cursor: str) -> str:
    """The time ``cursor`` was taken, ISO 8601 in UTC to the millisecond."""
    moment = datetime.datetime.fromtimestamp(cursor_time(cursor), datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
