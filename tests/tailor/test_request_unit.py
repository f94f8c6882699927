"""What a client asks Tailor for: the URL's parameters, read as a pure function."""

from __future__ import annotations

import re

import pytest

from tailor.aggregate import Options
from tailor.request import Asked, aggregation_parameters, parameters


def args(**values: str | list[str]) -> dict[bytes, list[bytes]]:
    return {
        name.encode(): [v.encode() for v in (value if isinstance(value, list) else [value])]
        for name, value in values.items()
    }


@pytest.mark.parametrize(
    "given, asked",
    [
        (args(i="events", q="level:error"), Asked("events", "level:error", None, None, {})),
        (args(i="events", q='{"match": {"a": 1}}'), Asked("events", {"match": {"a": 1}}, None, None, {})),
        (args(i="events", q="{a TO b}"), Asked("events", "{a TO b}", None, None, {})),  # a range
        (args(s="0123456789abcdef", limit="3"), Asked(None, None, "0123456789abcdef", 3, {})),
        (
            args(s="x", backlog="10", since="2026-11-29T10:00:00Z"),
            Asked(None, None, "x", None, {"last": 10, "since": "2026-11-29T10:00:00Z"}),
        ),
        (
            args(s="x", after="00000000000000010001"),
            Asked(None, None, "x", None, {"after": "00000000000000010001"}),
        ),
        (args(i="events", q="a", highlight="true"), Asked("events", "a", None, None, {}, highlight=True)),
        (args(s="x", highlight="false"), Asked(None, None, "x", None, {}, highlight=False)),
    ],
)
def test_what_a_url_asks_for(given, asked):
    assert parameters(given) == asked


@pytest.mark.parametrize(
    "given, message",
    [
        (args(i="events", q=["a", "b"]), "parameter 'q' is given more than once"),
        ({b"q": [b"\xff"], b"i": [b"events"]}, "parameter 'q' is not UTF-8"),
        (args(i="events", q="a", index="x"), "unknown parameter(s): index"),
        (args(i="events", q="a", limit="0"), "'limit' must be a positive integer"),
        (args(i="events", q="a", highlight="yes"), "'highlight' is true or false"),
        (args(s="x", backlog="-1"), "'backlog' must be a positive integer"),
        (args(s="x", since="  "), "'since' is empty"),
        (args(s="x", i="events"), "give either 's', or 'i' and 'q', not both"),
        (args(s=""), "'s' is empty"),
        (args(i="events", q="  "), "give 'i' (the index) and 'q' (the query), or 's'"),
        (args(i="events", q='{"a":' * 100_000), "'q' is nested too deeply"),
        (args(i="events", q='{"match": {"a": "\\ud800"}}'), "lone UTF-16 surrogate"),
    ],
)
def test_what_a_url_may_not_ask_for(given, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parameters(given)


def test_an_aggregation_is_asked_with_defaults_chosen_from_the_window():
    asked, options, every = aggregation_parameters(args(i="events", q="level:error", by="service,host"))
    assert asked == Asked("events", "level:error", None, None, {})
    assert options == Options(by=("service", "host"), k=10, window=300.0, interval=1.0) and every == 1.0
    _, options, every = aggregation_parameters(
        args(s="x", stats="duration_ms", window="30m", split="service", k="3", every="250ms")
    )
    assert (options.window, options.interval, options.split, options.k, every) == (
        1800.0,
        10.0,
        "service",
        3,
        0.25,
    )
    _, options, _ = aggregation_parameters(args(s="x", window="all", histogram="1s"))
    assert (options.window, options.interval) == (None, 1.0)


@pytest.mark.parametrize(
    "given, named",
    [
        ({"by": "a,,b"}, "'by'"),
        ({"by": "a,a"}, "'by'"),
        ({"stats": ",".join("abcdefghijk")}, "'stats'"),
        ({"k": "101"}, "'k'"),
        ({"k": "0"}, "'k'"),
        ({"window": "5x"}, "'window'"),
        ({"window": "2s"}, "'window'"),
        ({"window": "2d"}, "'window'"),
        ({"histogram": "5s"}, "'histogram'"),
        ({"window": "24h", "histogram": "1s"}, "'histogram'"),
        ({"split": "a,b"}, "'split'"),
        ({"every": "50ms"}, "'every'"),
        ({"limit": "3"}, "limit"),
        ({"since": " "}, "'since'"),
        ({"since": "15m", "window": "5m"}, "'since'"),
    ],
)
def test_a_bad_aggregation_parameter_is_named(given, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        aggregation_parameters(args(i="events", q="a", **given))


def test_since_counts_everything_from_then_on():
    _, options, _ = aggregation_parameters(args(i="events", q="a", since="15m", histogram="1s"))
    assert options.since == "15m" and options.window is None and options.interval == 1.0
    _, options, _ = aggregation_parameters(
        args(i="events", q="a", since="2026-12-06T00:00:00Z", window="all")
    )
    assert options.since == "2026-12-06T00:00:00Z" and options.window is None
