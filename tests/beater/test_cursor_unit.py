"""Cursors, `since` and the backlog's options: pure functions and a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from beater.cursor import Cursors, parse_since
from beater.service import _backlog_options
from estrom.cursor import CURSOR, cursor_at, cursor_ms, cursor_time, node_of


def test_cursors_grow_even_when_the_clock_steps_back_or_a_millisecond_fills():
    clock = Clock()
    clock.advance(1_700_000_000.000)
    cursors = Cursors(clock, node=0xBEEF)
    first = cursors.take(3)
    clock.advance(-5)  # NTP stepped the clock back
    second = cursors.take(2)
    many = cursors.take(70_000)  # more than one millisecond holds
    taken = first + second + many
    assert taken == sorted(taken) and len(set(taken)) == len(taken)
    assert all(CURSOR.fullmatch(c) and c.endswith("beef") for c in taken)
    assert cursor_time(first[0]) == 1_700_000_000.0
    assert cursor_time(many[-1]) == 1_700_000_000.001  # borrowed the next millisecond
    clock.advance(10)
    assert cursors.take(1)[0] > many[-1]


def test_cursor_at_a_time_is_below_every_cursor_taken_from_then_on():
    clock = Clock()
    clock.advance(1_700_000_000.5)
    (cursor,) = Cursors(clock).take(1)
    assert cursor_at(1_700_000_000.5) <= cursor < cursor_at(1_700_000_000.501)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 1000 - 90),
        ("5m", 1000 - 300),
        ("1.5h", 1000 - 5400),
        ("250ms", 1000 - 0.25),
        ("1970-01-01T00:10:00Z", 600),
        ("1970-01-01T00:10:00", 600),  # UTC unless it says otherwise
        ("1970-01-01T01:10:00+01:00", 600),
    ],
)
def test_since_is_a_duration_back_or_an_iso_time(text, seconds):
    assert parse_since(text, now=1000) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["yesterday", "5 minutes", "-5m", "", "2026-13-01", "1" * 10_000 + "s"])
def test_since_refuses_anything_else(text):
    with pytest.raises(ValueError, match="'since' must be a duration"):
        parse_since(text, now=1000)


def test_backlog_options_are_checked_and_since_becomes_a_cursor():
    assert _backlog_options({"last": 5}, 100, 1000) == {"last": 5}
    assert _backlog_options({"since": "10s"}, 100, 1000) == {"since": cursor_at(990)}
    after = "0" * 16 + "beef"
    assert _backlog_options({"after": after, "last": None}, 100, 1000) == {"after": after}
    page = {"after": after, "until": after}
    assert _backlog_options({"page": page}, 100, 1000) == {"page": page}
    for options, says in [
        ({"last": True}, "'last' must be a whole number"),
        ({"last": 1.5}, "'last' must be a whole number"),
        ({"last": 101}, "from 1 to 100"),
        ({"after": after.upper()}, "'after' must be a cursor"),
        ({"since": 5}, "'since' must be a string"),
        ({"page": page, "last": 1}, "'page' is the 'next' of a previous answer, alone"),
        ({"page": {"after": after}}, "'page' is the 'next'"),
        ({"page": {"after": after, "until": "x"}}, "'page' must be a cursor"),
        ([], "the options are an object"),
        (None, "give 'last', 'since' or 'after'"),
    ]:
        with pytest.raises(ValueError, match=None) as raised:
            _backlog_options(options, 100, 1000)
        assert says in str(raised.value), (options, raised.value)


def test_a_backlog_leaves_out_only_this_beaters_batches_not_yet_published():
    from beater.service import Beater

    clock = Clock()
    clock.advance(1_700_000_000)
    beater = Beater(percolator=None, cursors=Cursors(clock, node=0xBEEF))
    first, middle, last = beater.cursors.take(3)
    # Beater's own bookkeeping, set as deliver sets it for a batch on its way.
    beater._in_flight["events"] = {(first, last)}  # noqa: SLF001
    unpublished = beater._unpublished("events")  # noqa: SLF001
    assert unpublished(first) and unpublished(middle) and unpublished(last)
    (later,) = beater.cursors.take(1)
    assert not unpublished(later)
    assert not unpublished(middle[:16] + "cafe")  # another Beater's: it knows its own
    assert not beater._unpublished("other")(middle)  # noqa: SLF001


def test_the_layout_is_read_in_one_place():
    (cursor,) = Cursors(Clock(), node=0xBEEF).take(1)
    assert node_of(cursor) == "beef" and cursor_ms(cursor) == int(cursor_time(cursor) * 1000)
    for not_a_cursor in (None, 12, "", "abc", cursor + "0"):
        assert node_of(not_a_cursor) is None and cursor_ms(not_a_cursor) is None
