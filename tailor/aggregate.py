"""The aggregation of a stream's hits (issue 23, ``/api/v0.1/aggs``): a count, a histogram, the
top values of fields and statistics of numeric ones, over a rolling window or everything since
the stream opened. The core only: it is given hits and asked for frames.

Time is the hit's: the milliseconds its cursor holds (when Beater took its batch), so a
histogram means the same on every Beater and in the store. The rolling window is ``SLICES``
slices of ``window / SLICES`` each; each slice keeps what it added, and when it leaves the
window it is taken off the totals: a frame costs what changed, not what the window holds.

- Counts, and min/max/avg (from the sketch's exact count, min, max and sum), are exact.
- Top values are exact while each slice counts at most ``DISTINCT`` values of a field (with
  ``window=all``, the one slice ``DISTINCT_ALL``). Past it, that slice counts as space-saving
  does (Metwally et al.): a new value takes the place of the least counted one, with its count.
  A value's count in the window is then off by at most the sum, over those slices, of the count
  each last gave away: the frame says ``"approximate": true`` and that bound (``"error"``).
- Percentiles come from DDSketch (the ``ddsketch`` package, Datadog's), with a relative error
  of ``estrom.sketch.ACCURACY``: mergeable, so the window's sketch is its slices' merged; its error bound holds
  for every quantile whatever the distribution (t-digest's does not).
"""

from __future__ import annotations

import datetime
import functools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ddsketch import LogCollapsingLowestDenseDDSketch
from sortedcontainers import SortedKeyList

from estrom import sketch as sketches
from estrom.cursor import cursor_ms

SLICES = 30  # of a rolling window
DISTINCT = 1_000  # values of a field one slice of a rolling window counts exactly
DISTINCT_ALL = 10_000  # ... and the one slice of window=all
TEXT = 256  # characters of a value top values keep: a longer one is counted by its first ones


@dataclass(frozen=True)
class Options:
    """What a client asked for (tailor.request checks it)."""

    by: tuple[str, ...] = ()
    k: int = 10
    stats: tuple[str, ...] = ()
    window: float | None = 300.0  # seconds; None: everything since the stream opened
    interval: float = 1.0  # of the histogram's buckets, seconds
    split: str | None = None
    since: str | None = None  # from the store first (a duration back, or an ISO time): Beater reads it


def values_at(source: Any, path: str) -> list[Any]:
    """The values of the field ``path`` in a document's ``source``, as the engine reads them:
    dots walk into objects (or name a key that holds dots), arrays are flattened, objects and
    nulls are not values."""
    found: list[Any] = []
    _collect(source, path.split("."), 0, found)
    return found


def _collect(node: Any, parts: list[str], at: int, found: list[Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect(item, parts, at, found)
        return
    if at == len(parts):
        if node is not None and not isinstance(node, dict):
            found.append(node)
        return
    if not isinstance(node, dict):
        return
    for end in range(at + 1, len(parts) + 1):
        key = ".".join(parts[at:end])
        if key in node:
            _collect(node[key], parts, end, found)


def text(value: Any) -> str:
    """A value as top values show it: a string as it is, anything else as JSON writes it; at
    most TEXT characters (a longer one ends in "…")."""
    shown = value if isinstance(value, str) else json.dumps(value)
    return shown if len(shown) <= TEXT else shown[: TEXT - 1] + "…"


def number(value: Any) -> float | None:
    """A value as statistics count it: a finite JSON number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class _Slice:
    """What the hits of one slice of the window added."""

    start: int  # its number: slice start = start * width
    hits: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # by field: value -> count
    missing: dict[str, int] = field(default_factory=dict)  # by field: hits without it
    error: dict[str, int] = field(default_factory=dict)  # by field: the most a value gave away
    least: dict[str, SortedKeyList] = field(default_factory=dict)  # by field, once full: by count
    sketches: dict[str, LogCollapsingLowestDenseDDSketch] = field(default_factory=dict)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # by field: min, max
    sums: dict[str, float] = field(default_factory=dict)  # by field: exact, as the sketch's is not
    changes: int = 0  # statistics added to it: a merge of it made before is stale


class Aggregation:
    """The aggregation of one stream's hits (``add``), and its frames (``frame``)."""

    def __init__(self, options: Options, opened: float):
        self.options = options
        self.opened = opened
        self.count = 0  # hits since the stream opened
        self.cursor: str | None = None  # the greatest cursor seen
        ms = round(options.interval * 1000)
        self._bucket_ms = ms
        self._buckets: dict[int, int] = {}  # histogram: bucket number -> hits
        self._low_bucket = -1  # no bucket below it is kept
        self._first_bucket = int(opened * 1000) // ms  # the oldest one a hit was counted in
        self._split: dict[int, dict[str, int]] = {}  # bucket number -> split value -> hits
        if options.window is None:
            self._slice_ms, self._distinct = None, DISTINCT_ALL
        else:
            self._slice_ms, self._distinct = max(1, round(options.window * 1000 / SLICES)), DISTINCT
        self._slices: dict[int, _Slice] = {}
        fields = options.by + ((options.split,) if options.split and options.split not in options.by else ())
        self._fields = fields
        # The window's totals, kept as slices come and go.
        self._totals: dict[str, dict[str, int]] = {name: {} for name in fields}
        self._ranked: dict[str, SortedKeyList] = {
            name: SortedKeyList(key=lambda item: (-item[1], item[0])) for name in fields
        }
        self._values: dict[str, int] = dict.fromkeys(fields, 0)  # value-counts in the window
        self._missing: dict[str, int] = dict.fromkeys(fields, 0)
        self._hits = 0  # in the window
        self._seam: tuple[str, list[tuple[str, str]]] | None = None  # see backfill
        # By stats field: the slices but the newest merged, and which (with their changes) they
        # were. A frame merges that and the newest slice, not every slice of the window.
        self._merged: dict[str, tuple[tuple, Any, float, float, float]] = {}

    def add(self, hits: Iterable[Any], now: float) -> None:
        """Count ``hits`` (as Beater publishes them), arrived at ``now``."""
        self._expire(now)
        for hit in hits:
            if not isinstance(hit, dict):
                continue
            cursor = hit.get("_cursor")
            if self._seam is not None and self._held(cursor):
                continue
            ms = cursor_ms(cursor)
            ms = int(now * 1000) if ms is None else ms
            if isinstance(cursor, str) and (self.cursor is None or cursor > self.cursor):
                self.cursor = cursor
            self.count += 1
            source = hit.get("_source")
            bucket = ms // self._bucket_ms
            if bucket >= self._low_bucket:  # else late: its bucket has left the histogram
                self._buckets[bucket] = self._buckets.get(bucket, 0) + 1
                self._first_bucket = min(self._first_bucket, bucket)
            if bucket >= self._low_bucket and self.options.split is not None:
                counts = self._split.setdefault(bucket, {})
                for value in {text(v) for v in values_at(source, self.options.split)}:
                    counts[value] = counts.get(value, 0) + 1
            number_ = 0 if self._slice_ms is None else ms // self._slice_ms
            if self._slice_ms is not None and number_ < self._oldest(now):
                continue  # late: its slice has left the window
            piece = self._slices.get(number_)
            if piece is None:
                piece = self._slices[number_] = _Slice(number_)
            piece.hits += 1
            self._hits += 1
            for name in self._fields:
                values = {text(v) for v in values_at(source, name)}
                if not values:
                    piece.missing[name] = piece.missing.get(name, 0) + 1
                    self._missing[name] += 1
                for value in values:
                    self._count(piece, name, value)
            for name in self.options.stats:
                for value in values_at(source, name):
                    x = number(value)
                    if x is not None:
                        sketch = piece.sketches.get(name)
                        if sketch is None:
                            sketch = piece.sketches[name] = sketches.new()
                        sketch.add(x)
                        low, high = piece.bounds.get(name, (x, x))
                        piece.bounds[name] = (min(low, x), max(high, x))
                        piece.sums[name] = piece.sums.get(name, 0.0) + x
                        piece.changes += 1

    def _count(self, piece: _Slice, name: str, value: str, weight: int = 1) -> None:
        counts = piece.counts.setdefault(name, {})
        if value in counts:
            self._move(piece, name, value, counts[value] + weight)
        elif len(counts) < self._distinct:
            self._move(piece, name, value, weight)
        else:  # space-saving: the least counted value of the slice gives its place, and count
            least = piece.least.get(name)
            if least is None:
                least = piece.least[name] = SortedKeyList(counts.items(), key=lambda item: (item[1], item[0]))
            gone, given = least[0]
            self._move(piece, name, gone, 0)
            piece.error[name] = max(piece.error.get(name, 0), given)
            self._move(piece, name, value, given + weight)
        self._values[name] += weight

    def backfill(self, summary: dict[str, Any]) -> None:
        """Start from Beater's summary of the stored matches (``estrom.summary``, with ``bins``,
        the top values of as many as a slice counts, and this aggregation's histogram); from now
        on a hit counts only if the summary does not hold it: its cursor is past the summary's,
        or in a batch that was in flight then (``pending``)."""
        assert self._slice_ms is None, "a backfill is of window=all"
        self._seam = (summary.get("cursor") or "", [tuple(batch) for batch in summary.get("pending", [])])
        count = summary.get("count", 0)
        if not count:
            return
        self.count += count
        cursor = summary.get("cursor")
        if cursor and (self.cursor is None or cursor > self.cursor):
            self.cursor = cursor
        for row in summary.get("histogram", {}).get("buckets", []):
            moment = datetime.datetime.fromisoformat(row[0])
            bucket = round(moment.timestamp() * 1000) // self._bucket_ms
            if row[1]:
                self._buckets[bucket] = self._buckets.get(bucket, 0) + row[1]
                self._first_bucket = min(self._first_bucket, bucket)
            if self.options.split is not None and len(row) > 2 and row[2]:
                counts = self._split.setdefault(bucket, {})
                for value, n in row[2].items():
                    counts[value] = counts.get(value, 0) + n
        piece = self._slices.setdefault(0, _Slice(0))
        piece.hits += count
        self._hits += count
        for name, entry in summary.get("top", {}).items():
            if name not in self._totals:
                continue
            for value, n in entry["values"]:
                self._count(piece, name, text(value), n)
            self._values[name] += entry.get("other", 0)
            piece.missing[name] = piece.missing.get(name, 0) + entry.get("missing", 0)
            self._missing[name] += entry.get("missing", 0)
            if entry.get("error"):
                piece.error[name] = max(piece.error.get(name, 0), entry["error"])
        for name, figures in summary.get("stats", {}).items():
            if name not in self.options.stats or not figures.get("count"):
                continue
            sketch = piece.sketches.get(name)
            if sketch is None:
                sketch = piece.sketches[name] = sketches.new()
            sketch.merge(sketches.from_bins(figures.get("bins", {})))
            piece.changes += 1
            low, high = piece.bounds.get(name, (figures["min"], figures["max"]))
            piece.bounds[name] = (min(low, figures["min"]), max(high, figures["max"]))
            piece.sums[name] = piece.sums.get(name, 0.0) + figures["sum"]

    def _held(self, cursor: Any) -> bool:
        """Whether the backfill holds the hit with ``cursor``."""
        if self._seam is None or not isinstance(cursor, str):
            return False
        seam, pending = self._seam
        return cursor <= seam and not any(first <= cursor <= last for first, last in pending)

    def _move(self, piece: _Slice, name: str, value: str, count: int) -> None:
        """Set ``value``'s count in ``piece`` to ``count``, and the window's total with it."""
        counts = piece.counts[name]
        before = counts.get(value, 0)
        least = piece.least.get(name)
        if least is not None and before:
            least.remove((value, before))
        if count:
            counts[value] = count
            if least is not None:
                least.add((value, count))
        else:
            del counts[value]
        self._total(name, value, count - before)

    def _total(self, name: str, value: str, change: int) -> None:
        totals, ranked = self._totals[name], self._ranked[name]
        before = totals.get(value, 0)
        after = before + change
        if before:
            ranked.remove((value, before))
        if after > 0:
            totals[value] = after
            ranked.add((value, after))
        else:
            totals.pop(value, None)

    def _oldest(self, now: float) -> int:
        """The number of the oldest slice in the window at ``now``."""
        assert self._slice_ms is not None
        return int(now * 1000) // self._slice_ms - SLICES + 1

    def _expire(self, now: float) -> None:
        if self.options.window is not None:
            oldest_bucket = (int(now * 1000) - round(self.options.window * 1000)) // self._bucket_ms + 1
        else:  # hits taken before the stream opened (published after) count too
            oldest_bucket = int(now * 1000) // self._bucket_ms - MAX_BUCKETS + 1
        if oldest_bucket > self._low_bucket:  # what left the histogram: at most what it holds
            if oldest_bucket - self._low_bucket > len(self._buckets):
                stale = [b for b in self._buckets if b < oldest_bucket]
            else:
                stale = [b for b in range(self._low_bucket, oldest_bucket) if b in self._buckets]
            for bucket in stale:
                del self._buckets[bucket]
                self._split.pop(bucket, None)
            self._low_bucket = oldest_bucket
        if self._slice_ms is None:
            return
        oldest = self._oldest(now)
        for number_ in [n for n in self._slices if n < oldest]:
            piece = self._slices.pop(number_)
            self._hits -= piece.hits
            for name, counts in piece.counts.items():
                for value, count in counts.items():
                    self._total(name, value, -count)
                    self._values[name] -= count
            for name, count in piece.missing.items():
                self._missing[name] -= count

    def frame(self, now: float, rate: float) -> dict[str, Any]:
        """What the window holds at ``now`` (and ``rate``, the stream's own: hits a second over
        its last frame)."""
        self._expire(now)
        options = self.options
        frame: dict[str, Any] = {"at": iso(now), "cursor": self.cursor, "count": self.count, "rate": rate}
        approximate = False
        top = {}
        for name in options.by:
            entry, inexact = self._top(name, options.k)
            approximate = approximate or inexact
            top[name] = entry
        frame["histogram"] = self._histogram(now)
        if top:
            frame["top"] = top
        if options.stats:
            frame["stats"] = {name: self._stats(name) for name in options.stats}
        if approximate:
            frame["approximate"] = True
        return frame

    def _top(self, name: str, k: int) -> tuple[dict[str, Any], bool]:
        shown = [[value, count] for value, count in self._ranked[name][:k]]
        entry: dict[str, Any] = {
            "values": shown,
            "other": self._values[name] - sum(count for _, count in shown),
            "missing": self._missing[name],
        }
        error = sum(piece.error.get(name, 0) for piece in self._slices.values())
        if error:
            entry["approximate"] = True
            entry["error"] = error
        return entry, bool(error)

    def _histogram(self, now: float) -> dict[str, Any]:
        ms = self._bucket_ms
        last = int(now * 1000) // ms
        if self.options.window is not None:
            first = (int(now * 1000) - round(self.options.window * 1000)) // ms + 1
        else:
            first = max(min(int(self.opened * 1000) // ms, self._first_bucket), last - MAX_BUCKETS + 1)
        if self._buckets:
            last = max(last, max(self._buckets))  # a Beater's clock ahead of Tailor's
        buckets: list[list[Any]] = []
        split = self.options.split
        shown = [value for value, _ in self._ranked[split][:SPLIT_VALUES]] if split else []
        for bucket in range(first, last + 1):
            row: list[Any] = [_bucket_time(bucket * ms), self._buckets.get(bucket, 0)]
            if split:
                counts = self._split.get(bucket, {})
                row.append({value: counts[value] for value in shown if value in counts})
            buckets.append(row)
        histogram: dict[str, Any] = {"interval": duration_name(self.options.interval), "buckets": buckets}
        if split:
            histogram["split"] = {"field": split, "values": shown}
        return histogram

    def _stats(self, name: str) -> dict[str, Any]:
        newest = max(self._slices, default=None)
        older = tuple((n, piece.changes) for n, piece in sorted(self._slices.items()) if n != newest)
        merged = self._merged.get(name)
        if merged is None or merged[0] != older:
            pieces = [self._slices[n] for n, _ in older if name in self._slices[n].sketches]
            merged = (older, *_merge(pieces, name))
            self._merged[name] = merged
        _, older_sketch, low, high, total = merged
        sketch = sketches.new()
        sketch.merge(older_sketch)
        piece = self._slices.get(newest) if newest is not None else None
        if piece is not None and name in piece.sketches:
            sketch.merge(piece.sketches[name])
            low, high = min(low, piece.bounds[name][0]), max(high, piece.bounds[name][1])
            total += piece.sums[name]
        count = int(sketch.count)
        if not count:
            return {
                "count": 0,
                "min": None,
                "max": None,
                "avg": None,
                **{p: None for p, _ in sketches.QUANTILES},
            }
        return {"count": count, "min": low, "max": high, "avg": total / count, **sketches.quantiles(sketch)}


def _merge(pieces: Iterable[_Slice], name: str) -> tuple[Any, float, float, float]:
    """The sketch of field ``name`` of ``pieces`` merged, and their min, max and sum."""
    sketch, low, high, total = sketches.new(), math.inf, -math.inf, 0.0
    for piece in pieces:
        sketch.merge(piece.sketches[name])
        low, high = min(low, piece.bounds[name][0]), max(high, piece.bounds[name][1])
        total += piece.sums[name]
    return sketch, low, high, total


SPLIT_VALUES = 5  # a split histogram's stacks: the split field's top values in the window
MAX_BUCKETS = 1_440  # of a histogram with window=all: the newest ones (a day of 1m)


def iso(seconds: float) -> str:
    """An ISO 8601 UTC time, to the millisecond."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=16_384)
def _bucket_time(ms: int) -> str:
    """A bucket's time, as ``iso`` writes it: every frame of every stream writes the same ones."""
    return iso(ms / 1000)


def duration_name(seconds: float) -> str:
    for unit, size in (("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"
