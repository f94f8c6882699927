"""Stream's bounds, with twisted.web's test request and a fake clock: when a client is dropped."""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from estrom.http import ByteBudget
from tailor.aggregate import Aggregation, Options
from tailor.stream import Bounds, FrameGroup, FrameStream, Stream, encode_hit


class _Request(DummyRequest):
    """A test request for a push producer (DummyRequest's own registerProducer pulls forever)."""

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None


def _stream(max_pending=10, max_pending_bytes=10_000, max_behind=2.0, limit=None):
    clock, ended = Clock(), []
    request = _Request([b""])
    stream = Stream(
        request,
        "docs-for-x",
        limit,
        15.0,
        ended.append,
        Bounds(max_pending, max_pending_bytes, max_behind),
        clock,
    )
    stream.start("x")
    return stream, request, clock, ended


def _hits(n, size=10):
    return [json.dumps({"n": i, "pad": "x" * size}).encode() for i in range(n)]


def _body(request):
    return json.loads(b"".join(request.written))


def test_a_burst_past_the_bounds_is_kept_while_the_client_catches_up_in_time():
    stream, _, clock, ended = _stream()
    stream.pauseProducing()  # the transport's buffer is full: nothing drained yet
    stream.send(_hits(25))  # two and a half times the bounds, in one go
    clock.advance(1.9)
    assert not stream.closed
    stream.resumeProducing()  # the client read it all
    clock.advance(10)
    assert not stream.closed and stream.sent == 25 and not ended


def test_a_client_that_stays_past_the_bounds_is_dropped_with_a_count():
    stream, request, clock, ended = _stream()
    stream.send(_hits(3))
    stream.pauseProducing()
    stream.send(_hits(25))
    clock.advance(1.9)
    assert not stream.closed
    clock.advance(0.2)
    assert stream.closed and ended == [stream]
    body = _body(request)
    assert len(body["hits"]) == 3 and body["dropped"] == 25
    assert request.finished


def test_catching_up_below_the_bounds_resets_the_time_allowed():
    stream, request, clock, _ = _stream()
    stream.pauseProducing()
    stream.send(_hits(11))
    clock.advance(1.5)
    stream.resumeProducing()
    stream.pauseProducing()
    stream.send(_hits(11))  # past the bounds again: a new two seconds
    clock.advance(1.5)
    assert not stream.closed
    clock.advance(0.6)
    assert stream.closed and _body(request)["dropped"] == 11


def test_past_twice_the_bytes_the_stream_ends_at_once():
    stream, request, _, _ = _stream(max_pending=1000, max_pending_bytes=1000)
    stream.pauseProducing()
    stream.send(_hits(10, size=90))  # ~1,000 bytes: past the bounds, within the time allowed
    assert not stream.closed
    stream.send(_hits(11, size=90))  # past twice the bytes: memory is bounded
    assert stream.closed and _body(request)["dropped"] == 21


def test_a_stream_ended_otherwise_leaves_no_call_behind():
    stream, request, clock, _ = _stream(limit=5)
    stream.pauseProducing()
    stream.send(_hits(30))  # only 5 are kept: the limit
    stream.resumeProducing()
    assert stream.closed and len(_body(request)["hits"]) == 5
    assert clock.getDelayedCalls() == []

    stream, request, clock, _ = _stream()
    stream.pauseProducing()
    stream.send(_hits(30))
    assert len(clock.getDelayedCalls()) == 2  # the keep-alive, and the end of the time allowed
    stream.gone()  # the client went away
    assert clock.getDelayedCalls() == []


def _cursor(ms, node="beef"):
    return f"{ms:012x}0000{node}"


def _hit(n, ms, node="beef"):
    return {"_index": "i", "_id": str(n), "_cursor": _cursor(ms, node), "_source": {"n": n}}


def _send_live(stream, hits):
    stream.send([json.dumps(hit).encode() for hit in hits], [hit["_cursor"] for hit in hits])


def test_live_hits_wait_for_the_backlog_and_its_live_copies_are_skipped():
    stream, request, _, _ = _stream(max_pending=100)
    stream.hold()
    _send_live(stream, [_hit(3, 3), _hit(4, 4, node="cafe")])  # arrive while the backlog is read
    stream.send_backlog([_hit(1, 1), _hit(2, 2), _hit(3, 3)])
    stream.release()
    _send_live(stream, [_hit(5, 5)])
    stream.close()
    assert [hit["_source"]["n"] for hit in _body(request)["hits"]] == [1, 2, 3, 4, 5]


def test_backlog_cursors_are_kept_per_beater():
    stream, request, _, _ = _stream(max_pending=100)
    stream.hold()
    stream.send_backlog([_hit(1, 1), _hit(2, 2), _hit(3, 3, node="cafe")])
    stream.release()
    _send_live(stream, [_hit(9, 9)])  # from beef, newer than its backlog: 1 and 2 are done
    _send_live(stream, [_hit(3, 3, node="cafe")])  # the live copy of a backlog hit
    stream.close()
    assert [hit["_source"]["n"] for hit in _body(request)["hits"]] == [1, 2, 3, 9]


def test_too_much_held_while_the_backlog_is_read_ends_the_stream():
    stream, request, _, _ = _stream(max_pending=10, max_pending_bytes=1000)
    stream.hold()
    _send_live(stream, [_hit(n, n) for n in range(40)])  # ~70 bytes each: past twice the bytes
    assert stream.closed and _body(request)["dropped"] == 40


def _sharing(budget):
    """Two streams with ample bounds of their own, sharing one budget."""
    clock, ended, streams = Clock(), [], []
    for name in ("a", "b"):
        request = _Request([b""])
        stream = Stream(
            request,
            f"docs-for-{name}",
            None,
            15.0,
            ended.append,
            Bounds(1000, 10**9, 60.0),
            clock,
            budget=budget,
        )
        stream.start(name)
        streams.append((stream, request))
    return streams, ended


def test_streams_together_keep_no_more_than_the_budget_the_one_past_it_is_dropped():
    budget = ByteBudget(4_000)
    (slow, slow_request), (other, _) = _sharing(budget)[0]
    slow.pauseProducing()
    other.pauseProducing()
    hits = _hits(10, size=200)  # about 2,200 bytes
    other.send(hits)
    assert budget.held == sum(map(len, hits))
    slow.send(hits)  # within its own bounds, but past what all streams may keep
    assert slow.closed and not other.closed
    assert _body(slow_request)["dropped"] > 0
    assert budget.held == sum(map(len, hits))  # the dropped stream's hits were given back
    other.resumeProducing()  # the client read them
    assert budget.held == 0 and other.sent == 10


def test_a_stream_that_ends_gives_back_what_it_kept():
    budget = ByteBudget(10_000)
    (stream, _), _ = _sharing(budget)[0]
    stream.pauseProducing()
    stream.send(_hits(5, size=100))
    assert budget.held > 0
    stream.gone()  # the client went away
    assert budget.held == 0


def test_past_the_budget_the_stream_furthest_behind_ends_not_the_one_a_burst_reached():
    budget = ByteBudget(4_000)
    (behind, behind_request), (bursting, _) = _sharing(budget)[0]
    behind.pauseProducing()
    behind.send(_hits(14, size=200))  # about 3,100 bytes its client has not read
    bursting.pauseProducing()
    bursting.send(_hits(5, size=200))  # a burst of about 1,100 a moment before its client reads
    assert behind.closed and _body(behind_request)["dropped"] == 14
    assert not bursting.closed
    bursting.resumeProducing()
    assert bursting.sent == 5 and budget.held == 0


def test_aggregation_streams_in_a_group_share_one_frame_and_count_their_own():
    clock = Clock()
    aggregation = Aggregation(Options(by=("service",), window=60.0), 1_800_000_000.0)
    clock.advance(1_800_000_000.0)
    group = FrameGroup(aggregation, 1.0, clock)
    made = []
    frame = aggregation.frame
    aggregation.frame = lambda now, rate: made.append(now) or frame(now, rate)

    def hit(n):
        cursor = f"{int(clock.seconds() * 1000):012x}{n:04x}beef"
        return {"_cursor": cursor, "_source": {"service": "api"}}

    def open_stream():
        request = _Request([b""])
        stream = FrameStream(
            request,
            "docs-for-x",
            None,
            15.0,
            lambda s: None,
            clock=clock,
            aggregation=aggregation,
            every=1.0,
            group=group,
        )
        stream.start("x")
        return stream, request

    first, first_request = open_stream()
    first.add([hit(0), hit(1)], clock.seconds())
    second, second_request = open_stream()  # opened after two hits
    second.add([hit(2)], clock.seconds())  # the group's aggregation: counted once
    clock.advance(1.0)
    assert made == [clock.seconds()]  # one frame for both
    frames = [json.loads(b"".join(r.written) + b"]}")["frames"] for r in (first_request, second_request)]
    assert [f[0]["count"] for f in frames] == [3, 1]
    assert (
        frames[0][0]["top"]
        == frames[1][0]["top"]
        == {"service": {"values": [["api", 3]], "other": 0, "missing": 0}}
    )
    assert frames[0][0]["rate"] == 3.0 and frames[1][0]["rate"] == 1.0
    first.close()
    second.close()
    clock.advance(5.0)
    assert made == [1_800_000_001.0]  # the group stopped with its last stream


def test_hits_are_written_as_the_json_they_were():
    hits = [
        {"_id": "a", "_source": {"n": 2**70, "f": 1e16, "s": "é ✓", "l": [None, True, {"x": -0.5}]}},
        {"_id": "b", "_source": {"s": "lone \ud800 surrogate"}},  # escaped, not refused
    ]
    for hit in hits:
        written = encode_hit(hit)
        written.decode("utf-8")
        assert json.loads(written) == hit
