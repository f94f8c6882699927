"""Percentiles: DDSketch (the ``ddsketch`` package, Datadog's), shared by Tailor's live
aggregation and Beater's summary of stored documents.

A sketch puts each value in a bin (its key: ``ceil(log_gamma(value))``), and says a quantile to
within ``ACCURACY`` of the value, whatever the distribution; sketches of the same parameters
merge. The engine does not know DDSketch, so a summary asks it to count the bins themselves, as
a ``range`` aggregation with one range per bin (``ranges``): each range's bounds are the least
doubles of its key and the next, found by stepping through doubles, so that the engine puts every
value where ``ddsketch`` would. ``from_bins`` makes a sketch of such counts.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from ddsketch import LogCollapsingLowestDenseDDSketch
from ddsketch.mapping import LogarithmicMapping

ACCURACY = 0.01  # the sketch's relative error
BINS = 2_048  # of a sketch (each sign), at most: past them its lowest values are put together
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))

_MAPPING = LogarithmicMapping(ACCURACY)  # as LogCollapsingLowestDenseDDSketch's
TINY = _MAPPING.min_possible  # values within it of 0 count as 0


def new() -> LogCollapsingLowestDenseDDSketch:
    return LogCollapsingLowestDenseDDSketch(ACCURACY, BINS)


def key(magnitude: float) -> int:
    """The bin of a value of this (positive) magnitude."""
    return _MAPPING.key(magnitude)


def least_of(bin_key: int) -> float:
    """The least double ``key`` puts in ``bin_key``."""
    guess = 2.0 ** ((bin_key - 1) / _MAPPING._multiplier)  # noqa: SLF001 - the mapping's own constant
    guess = min(max(guess, TINY), sys.float_info.max)
    while guess > TINY and key(guess) >= bin_key:
        guess = math.nextafter(guess, 0.0)
    while key(guess) < bin_key:
        guess = math.nextafter(guess, math.inf)
    return guess


def ranges(low: float, high: float) -> list[dict[str, Any]]:
    """The engine's ``range`` aggregation ranges that count the bins of values from ``low`` to
    ``high`` (a field's min and max): ``p<key>``, ``n<key>`` (negative values) and ``zero``, at
    most BINS of each sign; past that the lowest go in one, as the sketch collapses them."""
    found: list[dict[str, Any]] = []
    if high > TINY:
        found += _side("p", max(low, math.nextafter(TINY, math.inf)), high, 1.0)
    if low < -TINY:
        found += _side("n", max(-high, math.nextafter(TINY, math.inf)), -low, -1.0)
    if low <= TINY and high >= -TINY:
        found.append({"key": "zero", "from": -TINY, "to": math.nextafter(TINY, math.inf)})
    return found


def _side(prefix: str, low: float, high: float, sign: float) -> list[dict[str, Any]]:
    """Ranges of the bins of magnitudes ``low`` to ``high``, for values of ``sign``."""
    first, last = key(low), key(high)
    first = max(first, last - BINS + 1)
    bounds = [least_of(k) for k in range(first + 1, last + 1)]
    found = []
    for position, bin_key in enumerate(range(first, last + 1)):
        lower = bounds[position - 1] if position else math.nextafter(TINY, math.inf)
        upper = bounds[position] if position < len(bounds) else math.inf
        if sign > 0:
            entry: dict[str, Any] = {"key": f"{prefix}{bin_key}", "from": lower}
            if upper != math.inf:
                entry["to"] = upper
        else:  # -upper < value <= -lower
            entry = {"key": f"{prefix}{bin_key}", "to": math.nextafter(-lower, math.inf)}
            if upper != math.inf:
                entry["from"] = math.nextafter(-upper, math.inf)
        found.append(entry)
    return found


def from_bins(bins: dict[str, int]) -> LogCollapsingLowestDenseDDSketch:
    """A sketch of bin counts as ``ranges`` name them. Its count is theirs; its sum, min and max
    are not the values' (keep those apart)."""
    sketch = new()
    for name, count in bins.items():
        if count <= 0:
            continue
        if name == "zero":
            sketch.add(0.0, count)
        elif name[0] in "pn":
            value = _MAPPING.value(int(name[1:]))
            sketch.add(value if name[0] == "p" else -value, count)
    return sketch


def quantiles(sketch: LogCollapsingLowestDenseDDSketch) -> dict[str, float | None]:
    return {label: sketch.get_quantile_value(quantile) for label, quantile in QUANTILES}
