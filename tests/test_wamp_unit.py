"""The heartbeat of RawSocket sessions (which have no ping), by task.Clock: a router that stops
answering gets its connection dropped, so the component reconnects. And the feed's payload codec
(tests/router/test_authorization.py sees it pass through the router)."""

from __future__ import annotations

import cbor2
import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import EncodedPayload
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from estrom import api
from estrom.wamp import FEED_ENCODING, HEARTBEAT_PROCEDURE, FeedCodec, Heartbeat, whole_join


class _Session:
    def __init__(self):
        self.calls: list[Deferred] = []
        self.aborted = False
        self.transport = self

    def call(self, procedure: str) -> Deferred:
        assert procedure == HEARTBEAT_PROCEDURE
        self.calls.append(Deferred())
        return self.calls[-1]

    def is_attached(self) -> bool:
        return not self.aborted

    def abort(self) -> None:
        self.aborted = True


def joined(clock: Clock) -> tuple[Heartbeat, _Session]:
    heartbeat, session = Heartbeat(interval=10, timeout=20, clock=clock), _Session()
    heartbeat.on_join(session, None)
    return heartbeat, session


def test_a_router_that_answers_keeps_its_connection():
    clock = Clock()
    _, session = joined(clock)
    for beat in range(1, 4):
        clock.advance(10)
        assert len(session.calls) == beat
        session.calls[-1].errback(ApplicationError("wamp.error.not_authorized"))  # refused: alive
    clock.advance(20)
    assert not session.aborted


def test_a_router_that_does_not_answer_has_its_connection_dropped():
    clock = Clock()
    _, session = joined(clock)
    clock.advance(10)  # the first beat
    clock.advance(19)
    assert not session.aborted
    clock.advance(1)
    assert session.aborted


def test_no_beat_after_the_session_left():
    clock = Clock()
    heartbeat, session = joined(clock)
    heartbeat.on_leave(session, None)
    clock.advance(100)
    assert session.calls == []


def test_a_join_that_fails_at_any_step_drops_the_connection_and_counts_it():
    session, failed = _Session(), []
    steps: list[str] = []

    async def join(session, details):
        steps.append("registered")
        raise ApplicationError("wamp.error.procedure_exists_with_different_invocation_policy")

    done = whole_join(join, failed.append)(session, None)
    assert done.called and steps == ["registered"]
    assert session.aborted  # the component reconnects and joins again, from the first step
    assert failed == ["join"]


def test_a_whole_join_keeps_its_connection():
    session, failed = _Session(), []
    pending: Deferred = Deferred()

    async def join(session, details):
        await pending

    done = whole_join(join, failed.append)(session, None)
    assert not done.called and not session.aborted
    pending.callback(None)
    assert done.called and not session.aborted and failed == []
    # A join that is not a coroutine (Tailor's) is taken too.
    assert whole_join(lambda session, details: None)(session, None).called


def test_the_feed_is_one_opaque_cbor_payload_and_nothing_else_is_encoded():
    codec = FeedCodec()
    hits, more = [{"_id": "1", "_source": {"level": "error", "n": 1.5}}], {api.MATCHES: {"a" * 16: [0]}}
    encoded = codec.encode(True, api.FEED, hits, more)
    assert (encoded.enc_algo, encoded.enc_serializer) == (FEED_ENCODING, "cbor")
    assert codec.decode(False, api.FEED, encoded) == (api.FEED, hits, more)
    # Per-query events, calls and their results, errors: as usual.
    assert codec.encode(True, api.topic("a" * 16), hits) is None
    assert codec.encode(True, api.REGISTER, ["events", "level:error"]) is None
    assert codec.encode(False, api.FEED, hits, more) is None


@pytest.mark.parametrize(
    ("uri", "payload"),
    [
        (api.topic("a" * 16), EncodedPayload(cbor2.dumps([[], {}]), FEED_ENCODING, "cbor")),
        (api.FEED, EncodedPayload(cbor2.dumps([[], {}]), "x_other", "cbor")),
        (api.FEED, EncodedPayload(b"{}", FEED_ENCODING, "json")),
        (api.FEED, EncodedPayload(cbor2.dumps({"hits": []}), FEED_ENCODING, "cbor")),
        (api.FEED, EncodedPayload(b"\xff", FEED_ENCODING, "cbor")),
    ],
)
def test_a_payload_that_is_not_the_feeds_is_refused(uri, payload):
    """autobahn drops an event whose payload the codec refuses, with a warning."""
    with pytest.raises((ValueError, TypeError, cbor2.CBORDecodeError)):
        FeedCodec().decode(False, uri, payload)
