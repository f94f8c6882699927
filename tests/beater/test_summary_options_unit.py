"""``estrom.summary``'s options (beater.summary.summary_options): what is taken, and a bad one
named."""

from __future__ import annotations

import re

import pytest

from beater.summary import Asked, summary_options
from estrom.cursor import cursor_at

NOW = 1_800_000_000.0


def test_the_options_taken():
    assert summary_options(None, NOW) == Asked()
    asked = summary_options(
        {
            "by": "service, host",
            "stats": ["ms"],
            "k": 50,
            "histogram": "1s",
            "split": "level",
            "since": "15m",
        },
        NOW,
    )
    assert asked == Asked(("service", "host"), 50, ("ms",), 1.0, "level", cursor_at(NOW - 900), False)
    assert summary_options({"bins": True}, NOW).bins is True
    assert summary_options({"fields": True}, NOW).fields is True
    assert summary_options({}, NOW).fields is False


@pytest.mark.parametrize(
    "options, named",
    [
        ([], "the options are an object"),
        ({"top": 3}, "unknown option"),
        ({"by": [1]}, "'by'"),
        ({"by": ["a", "a"]}, "'by'"),
        ({"by": ["a*"]}, "not patterns"),
        ({"stats": [f"f{n}" for n in range(11)]}, "'stats'"),
        ({"k": 0}, "'k'"),
        ({"k": 10_001}, "'k'"),
        ({"k": True}, "'k'"),
        ({"histogram": "5s"}, "'histogram'"),
        ({"split": ""}, "'split'"),
        ({"since": 5}, "'since'"),
        ({"since": "yesterday"}, "'since'"),
        ({"bins": "yes"}, "'bins'"),
        ({"fields": 1}, "'fields'"),
    ],
)
def test_a_bad_option_is_named(options, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        summary_options(options, NOW)
