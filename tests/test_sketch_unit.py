"""The bins the engine is asked to count (estrom.sketch.ranges) are the sketch's own: every
value falls in the range of the bin ddsketch puts it in, and a sketch made of those counts
gives the same quantiles."""

from __future__ import annotations

import math
import random

from estrom import sketch


def bin_of(ranges: list[dict], value: float) -> str:
    found = [r["key"] for r in ranges if r.get("from", -math.inf) <= value < r.get("to", math.inf)]
    assert len(found) == 1, (value, found)
    return found[0]


def test_every_value_is_counted_in_the_bin_the_sketch_puts_it_in():
    chance = random.Random(7)
    values = [chance.lognormvariate(3, 2) * chance.choice((1, -1)) for _ in range(2_000)]
    values += [0.0, 1.0, -1.0, 5e-324, -5e-324, 2.0, 0.5]  # within BINS of each other
    # Values on the bounds themselves: the least double of a bin, and the one before it.
    for bin_key in (-50, 0, 1, 7, 100, 700):
        least = sketch.least_of(bin_key)
        values += [least, math.nextafter(least, 0.0), -least, -math.nextafter(least, 0.0)]
    ranges = sketch.ranges(min(values), max(values))
    counts: dict[str, int] = {}
    direct = sketch.new()
    for value in values:
        name = bin_of(ranges, value)
        counts[name] = counts.get(name, 0) + 1
        direct.add(value)
        expected = (
            "zero" if abs(value) <= sketch.TINY else ("p" if value > 0 else "n") + str(sketch.key(abs(value)))
        )
        assert name == expected, value
    rebuilt = sketch.from_bins(counts)
    assert rebuilt.count == direct.count
    assert sketch.quantiles(rebuilt) == sketch.quantiles(direct)


def test_past_the_bins_the_lowest_values_share_one_as_the_sketch_collapses_them():
    ranges = sketch.ranges(1e-200, 1e200)
    assert len([r for r in ranges if r["key"].startswith("p")]) == sketch.BINS
    lowest = min((r for r in ranges if r["key"].startswith("p")), key=lambda r: r["from"])
    assert lowest["from"] <= 1e-200 < lowest["to"]
    assert sketch.ranges(5.0, 5.0) == [{"key": f"p{sketch.key(5.0)}", "from": ranges[0]["from"]}]
