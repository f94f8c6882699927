"""The heartbeat of RawSocket sessions (which have no ping), by task.Clock: a router that stops
answering gets its connection dropped, so the component reconnects."""

from __future__ import annotations

from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from estrom.wamp import HEARTBEAT_PROCEDURE, Heartbeat


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
