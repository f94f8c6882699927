"""Tailor's memory of named documents: a sender's resend is known, and a stream that had the
document is not given it again (tailor.resends), against a task.Clock."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.task import Clock

from estrom import api
from tailor.resends import Resends


@dataclass
class Reader:
    since: int
    after: str | None = None


def hit(document_id: str, cursor: str, named: bool = True) -> dict:
    found = {"_index": "events", "_id": document_id, "_cursor": cursor, "_source": {"n": 1}}
    if named:
        found[api.NAMED] = True
    return found


def cursor(n: int) -> str:
    return f"{n:012x}0000beef"


def given(resends: Resends, stream: Reader, hits: list[dict], topic: str = "docs-for-a") -> list[str]:
    _, copies = resends.deliver(topic, hits)
    keep = resends.keep(stream, copies, len(hits))
    return [hits[slot]["_id"] for slot in (range(len(hits)) if keep is None else keep)]


def test_a_stream_that_had_a_named_document_is_not_given_its_resend():
    resends = Resends(clock=Clock())
    open_throughout = Reader(since=1)
    assert given(resends, open_throughout, [hit("a", cursor(1)), hit("u1", cursor(2), named=False)]) == [
        "a",
        "u1",
    ]
    # The resend: the named one is known under its new cursor; the unnamed one is a new document.
    resent = [hit("a", cursor(3)), hit("u2", cursor(4), named=False)]
    assert given(resends, open_throughout, resent) == ["u2"]
    assert resends.dropped == 1
    # The same copy delivered again (its cursor the first's) is not a resend.
    assert given(resends, open_throughout, [hit("a", cursor(1))]) == ["a"]


def test_a_stream_opened_since_gets_the_resend_and_one_resumed_after_it_does_not():
    resends = Resends(clock=Clock())
    resends.deliver("docs-for-a", [hit("a", cursor(10))])
    opened_since = Reader(since=resends.deliveries + 1)
    resumed_after_it = Reader(since=resends.deliveries + 1, after=cursor(10))
    resumed_before_it = Reader(since=resends.deliveries + 1, after=cursor(9))
    _, copies = resends.deliver("docs-for-a", [hit("a", cursor(20))])
    assert copies == {0: (cursor(10), 1)}
    assert resends.keep(opened_since, copies, 1) is None  # it never had the document
    assert resends.keep(resumed_after_it, copies, 1) == []  # its client has every hit up to there
    assert resends.keep(resumed_before_it, copies, 1) is None


def test_a_backlog_copy_is_checked_too_and_topics_are_apart():
    resends = Resends(clock=Clock())
    resends.deliver("docs-for-a", [hit("a", cursor(10))])
    backlog = [hit("a", cursor(20), named=False), hit("b", cursor(21), named=False)]  # the store's
    assert resends.copies("docs-for-a", backlog) == {0: (cursor(10), 1)}
    assert resends.copies("docs-for-b", backlog) == {}
    resumed = Reader(since=5, after=cursor(15))
    assert resends.keep(resumed, resends.copies("docs-for-a", backlog), 2) == [1]


def test_two_copies_in_one_event_are_one_document():
    resends = Resends(clock=Clock())
    assert given(resends, Reader(since=1), [hit("a", cursor(1)), hit("a", cursor(2))]) == ["a"]


def test_ids_are_forgotten_after_the_horizon_and_past_the_most():
    clock = Clock()
    resends = Resends(horizon=300, most=3, clock=clock)
    resends.deliver("docs-for-a", [hit("a", cursor(1))])
    clock.advance(301)
    stream = Reader(since=1)
    assert given(resends, stream, [hit("a", cursor(2))]) == ["a"]  # a new document by now
    assert len(resends) == 1
    resends.deliver("docs-for-a", [hit(name, cursor(3 + n)) for n, name in enumerate("bcd")])
    assert len(resends) == 3  # "a" (its second copy) went first
    assert given(resends, stream, [hit("a", cursor(9)), hit("d", cursor(10))]) == ["a"]
    assert resends.dropped == 1


def test_hits_without_an_id_or_cursor_pass():
    resends = Resends(clock=Clock())
    odd = [{"_id": 1, "_cursor": cursor(1), api.NAMED: True}, "not a hit", {"_id": "x", api.NAMED: True}]
    assert resends.deliver("docs-for-a", odd) == (1, {})
    assert len(resends) == 0
