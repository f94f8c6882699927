"""The queue in front of the engine is bounded in documents and in bytes (time by task.Clock)."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from beater.pipeline import Overloaded, Pipeline, Received


def pipeline(**bounds) -> tuple[Pipeline, list[Deferred]]:
    percolations: list[Deferred] = []

    def deliver(
        index: str, documents: list[dict], requests: list[tuple[int, int]], ids: list[str], named: list[bool]
    ) -> Deferred:
        percolations.append(Deferred())
        return percolations[-1]

    return Pipeline(deliver, max_wait=1.0, clock=Clock(), in_flight=1, **bounds), percolations


def test_queued_bytes_are_bounded_whatever_the_number_of_documents():
    queue, _ = pipeline(max_queued=1000, max_queued_bytes=100)
    queue.submit(Received("events", [{"n": 1}], size=60))
    with pytest.raises(Overloaded, match="60 bytes"):
        queue.submit(Received("events", [{"n": 2}], size=60))
    queue.submit(Received("events", [{"n": 3}], size=40))  # fits exactly
    assert (queue.queued, queue.queued_bytes) == (2, 100)


def test_bytes_leave_the_queue_when_their_batch_goes_to_the_engine():
    queue, percolations = pipeline(max_queued_bytes=100, max_docs=1)
    queue.submit(Received("events", [{"n": 1}], size=90))  # a full batch: sent at once
    assert len(percolations) == 1 and queue.queued_bytes == 0
    queue.submit(Received("events", [{"n": 2}], size=90))  # waits behind the one in flight
    assert queue.queued_bytes == 90


def test_one_request_larger_than_the_bound_is_taken_when_nothing_waits():
    # Otherwise it could never be accepted: the body limit bounds it instead.
    queue, _ = pipeline(max_queued_bytes=100)
    queue.submit(Received("events", [{"n": 1}], size=500))
    assert queue.queued_bytes == 500
