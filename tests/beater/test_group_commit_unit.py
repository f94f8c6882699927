"""Group commit: no timer holds a request while the engine is idle; batches form while
percolations run (time by task.Clock, percolations by hand)."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from beater.pipeline import Pipeline, Received


def pipeline(**options) -> tuple[Pipeline, list[tuple[list[dict], Deferred]], Clock]:
    percolations: list[tuple[list[dict], Deferred]] = []

    def deliver(
        index: str, documents: list[dict], requests: list[tuple[int, int]], ids: list[str], named: list[bool]
    ) -> Deferred:
        percolations.append((documents, Deferred()))
        return percolations[-1][1]

    clock = Clock()
    return Pipeline(deliver, clock=clock, **options), percolations, clock


def test_a_lone_request_goes_to_the_engine_at_once():
    queue, percolations, clock = pipeline()
    done = queue.submit(Received("events", [{"n": 1}]))
    assert [documents for documents, _ in percolations] == [[{"n": 1}]]  # no clock advanced
    assert not clock.getDelayedCalls()
    percolations[0][1].callback({"0123456789abcdef": [0]})
    assert done.result == {"accepted": 1, "matched": 1, "published": 1}


def test_requests_arriving_while_percolations_run_share_the_next_one():
    queue, percolations, _ = pipeline(in_flight=2)
    for n in range(5):
        queue.submit(Received("events", [{"n": n}]))
    # Two go at once, one each; the other three wait for a percolation to end, together.
    assert [len(documents) for documents, _ in percolations] == [1, 1]
    percolations[1][1].callback({})
    assert [documents for documents, _ in percolations][2] == [{"n": 2}, {"n": 3}, {"n": 4}]


def test_a_configured_wait_still_holds_a_batch_for_companions():
    queue, percolations, clock = pipeline(max_wait=0.5)
    queue.submit(Received("events", [{"n": 1}]))
    queue.submit(Received("events", [{"n": 2}]))
    assert percolations == []
    clock.advance(0.5)
    assert [documents for documents, _ in percolations] == [[{"n": 1}, {"n": 2}]]
