"""The documents the engine cannot read, found in one place (beater.pipeline): named by the
engine's item statuses, or found half by half; one sender's bad document fails nobody else.
Time by task.Clock; the engine by a deliver that refuses documents with ``"bad": true``."""

from __future__ import annotations

from twisted.internet.task import Clock

from beater.engine import EngineUnavailable
from beater.pipeline import BISECTIONS, Pipeline, Received, UnreadableDocuments


class Engine:
    """Refuses a delivery holding a ``"bad"`` document, naming them if ``named``; ``down``: the
    deliveries from that one on fail as unavailable."""

    def __init__(self, named: bool, down: int | None = None):
        self.named, self.down = named, down
        self.deliveries: list[list[int]] = []  # the documents' "n" of each

    async def deliver(self, index, documents, requests, ids, named):
        self.deliveries.append([document["n"] for document in documents])
        if self.down is not None and len(self.deliveries) > self.down:
            raise EngineUnavailable("engine gone")
        bad = {
            slot: f"n {document['n']} is bad"
            for slot, document in enumerate(documents)
            if document.get("bad")
        }
        if bad:
            raise UnreadableDocuments("mapper_parsing_exception", bad if self.named else None)
        return {"q": list(range(len(documents)))}  # every document matches one query


def one_batch(engine: Engine, *requests: Received) -> list:
    """Submit ``requests`` as one batch; what each Deferred gave: counts, or the exception."""
    clock = Clock()
    queue = Pipeline(engine.deliver, max_docs=100_000, max_wait=1, clock=clock)  # one batch
    outcomes: dict[int, object] = {}
    for number, received in enumerate(requests):
        queue.submit(received).addCallbacks(
            lambda counts, n=number: outcomes.setdefault(n, counts),
            lambda failure, n=number: outcomes.setdefault(n, failure.value),
        )
    clock.advance(1)
    assert sorted(outcomes) == list(range(len(requests))), "every request is answered"
    return [outcomes[number] for number in range(len(requests))]


def docs(*numbers: int, bad: tuple[int, ...] = ()) -> list[dict]:
    return [{"n": n, **({"bad": True} if n in bad else {})} for n in numbers]


def test_a_request_with_a_document_the_engine_names_fails_alone_and_says_which_of_its_own():
    engine = Engine(named=True)
    a, b, c = (Received("i", docs(1, 2)), Received("i", docs(3, 4, bad=(4,))), Received("i", docs(5)))
    outcomes = one_batch(engine, a, b, c)
    # One delivery refused, one without the request that held the bad document.
    assert engine.deliveries == [[1, 2, 3, 4, 5], [1, 2, 5]]
    assert outcomes[0] == {"accepted": 2, "matched": 2, "published": 2}
    assert isinstance(outcomes[1], UnreadableDocuments)
    assert str(outcomes[1]) == "document 1: n 4 is bad"  # its position in its own request
    assert outcomes[2] == {"accepted": 1, "matched": 1, "published": 1}


def test_without_names_each_request_goes_alone_and_only_the_failing_ones_fail():
    engine = Engine(named=False)
    requests = [Received("i", docs(n, bad=(2, 5))) for n in range(8)]
    outcomes = one_batch(engine, *requests)
    failed = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, UnreadableDocuments)]
    assert failed == [2, 5]
    assert all(outcome["accepted"] == 1 for n, outcome in enumerate(outcomes) if n not in failed)
    # Each good document published once: in the one delivery of it that held no bad one.
    published = [n for delivery in engine.deliveries if not {2, 5} & set(delivery) for n in delivery]
    assert sorted(published) == [0, 1, 3, 4, 6, 7]
    assert len(engine.deliveries) == 1 + 8


def test_a_request_taken_document_by_document_loses_only_its_bad_documents():
    engine = Engine(named=False)
    whole, each = Received("i", docs(1, 2)), Received("i", docs(3, 4, 5, 6, bad=(4,)), each=True)
    outcomes = one_batch(engine, whole, each)
    assert outcomes[0] == {"accepted": 2, "matched": 2, "published": 2}
    assert outcomes[1] == {"accepted": 3, "matched": 3, "published": 3}
    assert list(outcomes[1].refused) == [1]
    assert isinstance(outcomes[1].refused[1], UnreadableDocuments)


def test_when_the_engine_goes_away_while_finding_them_every_request_left_hears_so():
    engine = Engine(named=False, down=1)  # the first delivery is refused, the rest fail
    whole, each = Received("i", docs(1, bad=(1,))), Received("i", docs(2, 3), each=True)
    outcomes = one_batch(engine, whole, each)
    assert isinstance(outcomes[0], (UnreadableDocuments, EngineUnavailable))
    assert outcomes[1]["accepted"] == 0
    assert {type(error) for error in outcomes[1].refused.values()} == {EngineUnavailable}
    assert sorted(outcomes[1].refused) == [0, 1]


def test_the_bad_documents_of_a_request_taken_document_by_document_are_found_by_halves():
    engine = Engine(named=False)
    outcomes = one_batch(engine, Received("i", docs(*range(64), bad=(5, 40)), each=True))
    assert sorted(outcomes[0].refused) == [5, 40] and outcomes[0]["accepted"] == 62
    assert len(engine.deliveries) <= 1 + 2 * 2 * 6  # two halvings per bad one, log2(64) deep


def test_a_request_of_bad_documents_costs_a_bounded_number_of_deliveries():
    engine = Engine(named=False)
    outcomes = one_batch(engine, Received("i", docs(*range(3000), bad=tuple(range(3000))), each=True))
    assert len(outcomes[0].refused) == 3000 and outcomes[0]["accepted"] == 0
    assert "too many refused in one request to tell which" in str(outcomes[0].refused[2999])
    assert len(engine.deliveries) <= 1 + 2 * BISECTIONS


def test_a_request_of_many_bad_documents_cannot_cost_another_sender_its_request():
    engine = Engine(named=False)
    flood = Received("i", docs(*range(3000), bad=tuple(range(3000))), each=True)
    innocent = Received("i", docs(5000))
    outcomes = one_batch(engine, flood, innocent)
    assert outcomes[1] == {"accepted": 1, "matched": 1, "published": 1}
    assert len(outcomes[0].refused) == 3000


def test_an_empty_request_is_answered_either_way():
    outcomes = one_batch(Engine(named=True), Received("i", [], each=True), Received("i", []))
    assert outcomes == [{"accepted": 0, "matched": 0, "published": 0}] * 2
