"""What a client asks Tailor for: the URL's parameters, read as a pure function."""

from __future__ import annotations

import re

import pytest

from tailor.request import Asked, parameters


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
