"""The aggregation core (tailor.aggregate): counts, top values, statistics and the histogram of
hits, over a rolling window or everything, checked against what the hits hold."""

from __future__ import annotations

import random
from collections import Counter

from estrom import sketch
from estrom.sketch import ACCURACY
from tailor import aggregate
from tailor.aggregate import Aggregation, Options, values_at

T0 = 1_800_000_000.0  # seconds: an even minute


def _hit(ms: float, source: dict, node: str = "00a1") -> dict:
    return {"_index": "i", "_id": "x", "_cursor": f"{int(ms):012x}0000{node}", "_source": source}


def test_values_are_read_as_the_engine_reads_fields():
    source = {"kubernetes": {"pod": "a"}, "k8s.pod": "b", "tags": ["x", ["y"], None, {"z": 1}], "n": None}
    assert values_at(source, "kubernetes.pod") == ["a"]
    assert values_at(source, "k8s.pod") == ["b"]
    assert values_at(source, "tags") == ["x", "y"]
    assert values_at({"a": [{"b": 1}, {"b": 2}]}, "a.b") == [1, 2]
    assert values_at(source, "n") == [] and values_at(source, "missing") == []


def test_everything_since_open_is_counted_exactly():
    rng = random.Random(7)
    options = Options(by=("service",), k=3, stats=("ms",), window=None, interval=60.0)
    agg = Aggregation(options, T0)
    services, durations, missing = Counter(), [], 0
    hits = []
    for n in range(5000):
        source = {"ms": rng.lognormvariate(3, 1)}
        if n % 50:
            source["service"] = rng.choice(["api", "web", "db", "queue", "auth"])
            services[source["service"]] += 1
        else:
            missing += 1
        durations.append(source["ms"])
        hits.append(_hit((T0 + n / 100) * 1000, source))
    for start in range(0, len(hits), 100):
        agg.add(hits[start : start + 100], T0 + 50)
    frame = agg.frame(T0 + 51, 0.0)
    assert frame["count"] == 5000
    expected = sorted(services.items(), key=lambda item: (-item[1], item[0]))
    assert frame["top"]["service"]["values"] == [list(item) for item in expected[:3]]
    assert frame["top"]["service"]["other"] == sum(c for _, c in expected[3:])
    assert frame["top"]["service"]["missing"] == missing
    assert "approximate" not in frame
    stats = frame["stats"]["ms"]
    assert stats["count"] == 5000 and stats["min"] == min(durations) and stats["max"] == max(durations)
    assert abs(stats["avg"] - sum(durations) / 5000) < 1e-9 * stats["avg"]
    ranked = sorted(durations)
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = ranked[int(q * 4999)]
        assert abs(stats[label] - exact) <= ACCURACY * exact * 1.000001, label
    assert frame["histogram"]["interval"] == "1m" and frame["histogram"]["buckets"][0][1] == 5000


def test_a_rolling_window_forgets_what_left_it():
    agg = Aggregation(Options(by=("level",), stats=("n",), window=60.0, interval=1.0), T0)
    agg.add([_hit(T0 * 1000 + i, {"level": "debug", "n": 1}) for i in range(10)], T0)
    agg.add([_hit((T0 + 30) * 1000, {"level": "error", "n": 5})], T0 + 30)
    frame = agg.frame(T0 + 31, 0.0)
    assert frame["top"]["level"]["values"] == [["debug", 10], ["error", 1]]
    assert frame["stats"]["n"]["count"] == 11 and frame["stats"]["n"]["max"] == 5
    assert len(frame["histogram"]["buckets"]) == 60
    assert sum(n for _, n in frame["histogram"]["buckets"]) == 11
    later = agg.frame(T0 + 62, 0.0)  # the first hits' slice has left the window
    assert later["count"] == 11  # since the stream opened
    assert later["top"]["level"]["values"] == [["error", 1]]
    assert later["stats"]["n"] == {**later["stats"]["n"], "count": 1, "min": 5, "max": 5}
    assert sum(n for _, n in later["histogram"]["buckets"]) == 1
    gone = agg.frame(T0 + 200, 0.0)
    assert gone["top"]["level"] == {"values": [], "other": 0, "missing": 0}
    assert gone["stats"]["n"]["count"] == 0 and gone["stats"]["n"]["p99"] is None


def test_past_the_bound_top_values_are_approximate_within_the_stated_error(monkeypatch):
    monkeypatch.setattr(aggregate, "DISTINCT_ALL", 20)
    rng = random.Random(3)
    agg = Aggregation(Options(by=("user",), k=5, window=None), T0)
    truth: Counter = Counter()
    for n in range(3000):
        # a few heavy users among many light ones
        user = f"heavy{rng.randrange(3)}" if rng.random() < 0.5 else f"light{rng.randrange(500)}"
        truth[user] += 1
        agg.add([_hit(T0 * 1000 + n, {"user": user})], T0 + 1)
    frame = agg.frame(T0 + 2, 0.0)
    entry = frame["top"]["user"]
    assert frame["approximate"] and entry["approximate"]
    error = entry["error"]
    shown = dict(entry["values"])
    assert {"heavy0", "heavy1", "heavy2"} <= set(shown)
    for value, count in shown.items():
        assert truth[value] <= count <= truth[value] + error, value
    assert sum(c for _, c in entry["values"]) + entry["other"] == 3000


def test_the_histogram_is_split_by_a_fields_top_values():
    agg = Aggregation(Options(window=10.0, interval=1.0, split="service"), T0)
    agg.add([_hit(T0 * 1000, {"service": "api"}), _hit(T0 * 1000 + 5, {"service": "web"})], T0)
    agg.add([_hit((T0 + 1) * 1000, {"service": "api"}), _hit((T0 + 1) * 1000, {})], T0 + 1)
    histogram = agg.frame(T0 + 1.5, 0.0)["histogram"]
    assert histogram["split"] == {"field": "service", "values": ["api", "web"]}
    assert histogram["buckets"][-2:] == [
        ["2027-01-15T08:00:00.000Z", 2, {"api": 1, "web": 1}],
        ["2027-01-15T08:00:01.000Z", 2, {"api": 1}],
    ]


def test_a_backfill_is_joined_to_the_live_hits_at_its_cursor():
    options = Options(by=("service",), k=5, stats=("ms",), window=None, interval=60.0, split="service")
    agg = Aggregation(options, T0)
    seam = _hit((T0 - 10) * 1000, {})["_cursor"]
    pending = [_hit((T0 - 20) * 1000, {}, node="00b2")["_cursor"]] * 2
    stored = [1.0, 2.0, 3.0, 400.0]
    bins: Counter = Counter()
    for value in stored:
        bins[f"p{sketch.key(value)}"] += 1
    agg.backfill(
        {
            "cursor": seam,
            "count": 4,
            "pending": [pending],
            "histogram": {"interval": "1m", "buckets": [[aggregate.iso(T0 - 60), 4, {"api": 3, "db": 1}]]},
            "top": {"service": {"values": [["api", 3], ["db", 1]], "other": 0, "missing": 0}},
            "stats": {"ms": {"count": 4, "min": 1.0, "max": 400.0, "sum": 406.0, "bins": dict(bins)}},
        }
    )
    # Live: one the summary holds (at its cursor), one of a batch in flight at the seam (below
    # it, but not held), and one after it.
    agg.add([_hit((T0 - 10) * 1000, {"service": "api", "ms": 1000.0})], T0)
    agg.add([_hit((T0 - 20) * 1000, {"service": "web", "ms": 5.0}, node="00b2")], T0)
    agg.add([_hit((T0 + 1) * 1000, {"service": "api", "ms": 6.0})], T0 + 1)
    frame = agg.frame(T0 + 2, 0.0)
    assert frame["count"] == 6
    assert frame["top"]["service"]["values"] == [["api", 4], ["db", 1], ["web", 1]]
    assert frame["stats"]["ms"]["count"] == 6
    assert frame["stats"]["ms"]["min"] == 1.0 and frame["stats"]["ms"]["max"] == 400.0
    assert frame["stats"]["ms"]["avg"] == (406.0 + 5.0 + 6.0) / 6
    assert abs(frame["stats"]["ms"]["p50"] - 3.0) <= ACCURACY * 5.0  # 1, 2, 3, 5, 6, 400
    buckets = {at: n for at, n, *_ in frame["histogram"]["buckets"]}
    assert buckets[aggregate.iso(T0 - 60)] == 5 and buckets[aggregate.iso(T0)] == 1


def test_long_values_are_counted_by_their_first_characters():
    agg = Aggregation(Options(by=("msg",), window=None), T0)
    agg.add([_hit(T0 * 1000, {"msg": "x" * 10_000}), _hit(T0 * 1000, {"msg": "x" * 300})], T0)
    ((value, count),) = agg.frame(T0, 0.0)["top"]["msg"]["values"]
    assert count == 2 and len(value) == aggregate.TEXT and value.endswith("…")


def test_statistics_of_a_rolling_window_follow_late_hits_and_slices_leaving():
    agg = Aggregation(Options(stats=("ms",), window=60.0, interval=1.0), T0)
    for second in range(30):  # 2-second slices
        agg.add([_hit((T0 + second) * 1000, {"ms": 10.0 + second})], T0 + second)
    first = agg.frame(T0 + 30, 0.0)["stats"]["ms"]
    assert first["count"] == 30 and first["min"] == 10.0 and first["max"] == 39.0
    # A late hit, into a slice that is not the newest: the merge of the older slices is redone.
    agg.add([_hit((T0 + 3) * 1000, {"ms": 1.0})], T0 + 30)
    late = agg.frame(T0 + 30, 0.0)["stats"]["ms"]
    assert late["count"] == 31 and late["min"] == 1.0 and late["avg"] == (sum(range(10, 40)) + 1.0) / 31
    # 40 s on, the slices of the first 12 seconds (and the late hit) have left the window.
    moved = agg.frame(T0 + 70, 0.0)["stats"]["ms"]
    assert moved["count"] == 18 and moved["min"] == 22.0
