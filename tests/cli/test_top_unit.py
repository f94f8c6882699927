"""`estrom top`: its screen and lines from frames (estrom.top)."""

from __future__ import annotations

from estrom.top import plain, sparkline, table

FRAME = {
    "at": "2026-12-05T21:00:01.000Z",
    "count": 1913,
    "rate": 812.4,
    "histogram": {"interval": "1s", "buckets": [["t0", 0], ["t1", 4], ["t2", 8]]},
    "top": {"service": {"values": [["api", 75], ["\x1b]52;c;evil\x07web", 25]], "other": 0, "missing": 5}},
    "stats": {"ms": {"count": 100, "min": 1.0, "max": 9.5, "avg": 3.25, "p50": 3.0, "p90": 8.0, "p99": None}},
}


def test_a_frame_becomes_a_screen_of_shares_and_figures_with_no_escape_of_a_document():
    lines = table(FRAME, 100)
    assert lines[0] == "2026-12-05T21:00:01.000Z  total 1,913  rate 812.4/s"
    assert lines[1] == "▁▄█"
    assert any(line.startswith("  api") and "75" in line and "75.0%" in line for line in lines)
    assert not any("\x1b" in line or "\x07" in line for line in lines)
    assert "  count 100  min 1  max 9.5  avg 3.25  p50 3  p90 8  p99 -" in lines
    assert all(len(line) <= 30 for line in table(FRAME, 30))


def test_a_frame_becomes_one_plain_line():
    line = plain(FRAME)
    assert line.startswith("count=1913 rate=812.4/s | service: api=75, ")
    assert "\x1b" not in line and "ms: count=100 min=1 max=9.5" in line


def test_the_sparkline_scales_to_the_largest_bucket():
    assert sparkline([]) == "" and sparkline([0, 0]) == "▁▁"
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
