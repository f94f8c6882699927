"""Tailor hands each feed event (api.FEED: a batch's hits once, and the queries they matched) to
the streams of the topics it subscribes to; no router needed (tests/e2e/test_several_beaters.py
runs the feed between real Beaters, a router and Tailors)."""

from __future__ import annotations

from estrom import api
from tailor.service import Tailor

A, B, C = "a" * 16, "b" * 16, "c" * 16


def fed_tailor() -> tuple[Tailor, list[tuple[str, tuple]]]:
    """A Tailor subscribed to A's and B's topics, and what it hands to their streams."""
    tailor = Tailor(keepalive=15)
    tailor._subscriptions = {api.topic(A): object(), api.topic(B): object()}  # noqa: SLF001
    handed: list[tuple[str, tuple]] = []
    tailor._deliver = lambda topic, hits, more: handed.append((topic, hits))  # noqa: SLF001
    return tailor, handed


def test_a_feed_event_goes_to_the_topics_tailor_subscribes_to_each_with_its_hits():
    tailor, handed = fed_tailor()
    hits = [{"_id": str(n)} for n in range(3)]
    tailor._fed(*hits, **{api.MATCHES: {A: [0, 2], C: [1], B: [1]}})  # noqa: SLF001
    # C is another Tailor's: left alone.
    assert handed == [(api.topic(A), (hits[0], hits[2])), (api.topic(B), (hits[1],))]


def test_a_feed_event_that_does_not_add_up_is_dropped_not_raised():
    tailor, handed = fed_tailor()
    tailor._fed({"_id": "0"})  # noqa: SLF001 - no matches
    tailor._fed({"_id": "0"}, **{api.MATCHES: [A]})  # noqa: SLF001
    tailor._fed({"_id": "0"}, **{api.MATCHES: {A: [1], B: None}})  # noqa: SLF001
    assert handed == []
    tailor._fed({"_id": "0"}, **{api.MATCHES: {A: [1], B: [0]}})  # noqa: SLF001 - B's still go
    assert handed == [(api.topic(B), ({"_id": "0"},))]
