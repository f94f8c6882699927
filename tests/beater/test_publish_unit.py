"""Publishing a percolation's hits: the router going away is "retry"; a bug is not; no event is
larger than the router should carry."""

from __future__ import annotations

import json

import cbor2
import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from beater.delivery import EVENT_BYTES, RouterUnavailable
from beater.engine import EngineUnavailable
from beater.interest import Interest
from beater.service import Beater
from estrom import api
from estrom.testing import MatchingPercolator, PublishingSession
from tests.beater.test_interest_unit import _Router


def beater(error: Exception | None) -> Beater:
    service = Beater(MatchingPercolator({"0123456789abcdef": [0]}))
    service.session = PublishingSession(error)
    return service


@pytest_twisted.ensureDeferred
async def test_hits_are_published_per_query():
    assert await beater(None).deliver("events", [{"a": 1}]) == {"0123456789abcdef": [0]}


@pytest.mark.parametrize(
    "error", [TransportLost(), ApplicationError("wamp.error.not_authorized")], ids=["lost", "refused"]
)
@pytest_twisted.ensureDeferred
async def test_a_router_that_is_gone_or_refuses_means_retry(error):
    with pytest.raises(RouterUnavailable):
        await beater(error).deliver("events", [{"a": 1}])


@pytest_twisted.ensureDeferred
async def test_a_bug_while_publishing_is_not_passed_off_as_unavailable():
    # Senders retry 503 forever: a bug must surface as itself (a 500, logged).
    with pytest.raises(TypeError):
        await beater(TypeError("not serializable")).deliver("events", [{"a": 1}])


def numbers(session: PublishingSession) -> list[tuple]:
    """The documents' "n" of each publication."""
    return [tuple(hit["_source"]["n"] for hit in hits) for _, hits, _, _ in session.made]


@pytest_twisted.ensureDeferred
async def test_batches_publish_in_the_order_they_were_formed_whichever_percolation_ends_first():
    percolator, session = MatchingPercolator(held=True), PublishingSession()
    service = Beater(percolator)
    service.session = session
    first = Deferred.fromCoroutine(service.deliver("events", [{"n": 1}, {"n": 2}]))
    second = Deferred.fromCoroutine(service.deliver("events", [{"n": 3}]))
    other_index = Deferred.fromCoroutine(service.deliver("other", [{"n": 9}]))
    percolator.pending[2].callback({"0123456789abcdef": [0]})  # another index: not held back
    percolator.pending[1].callback({"0123456789abcdef": [0]})  # the second batch first
    assert numbers(session) == [(9,)]
    percolator.pending[0].callback({"0123456789abcdef": [0, 1]})
    await first, await second, await other_index
    assert numbers(session) == [(9,), (1, 2), (3,)]


def one_query_each(documents: list[dict]) -> dict[str, list[int]]:
    return {f"{n:016x}": [n] for n in range(len(documents))}


@pytest_twisted.ensureDeferred
async def test_one_acknowledgement_covers_a_batch_and_the_sender_waits_for_it():
    service, session = Beater(MatchingPercolator(one_query_each)), PublishingSession(held=True)
    service.session = session
    delivered = Deferred.fromCoroutine(service.deliver("events", [{"n": n} for n in range(3)]))
    assert session.acknowledged() == [
        ("docs-for-0000000000000000", False),
        ("docs-for-0000000000000001", False),
        ("docs-for-0000000000000002", True),  # the router took all three once it answers this
    ]
    assert not delivered.called, "answered before the router acknowledged the batch"
    session.acknowledgement.callback(None)
    assert len(await delivered) == 3


@pytest_twisted.ensureDeferred
async def test_a_batch_whose_acknowledgement_is_lost_means_retry():
    service, session = Beater(MatchingPercolator(one_query_each)), PublishingSession(held=True)
    service.session = session
    delivered = Deferred.fromCoroutine(service.deliver("events", [{"n": n} for n in range(2)]))
    session.acknowledgement.errback(TransportLost())
    with pytest.raises(RouterUnavailable):
        await delivered


def all_of_them(documents: list[dict]) -> dict[str, list[int]]:
    """One query, which every document matches."""
    return {"0123456789abcdef": list(range(len(documents)))}


async def published(
    documents: list[dict], requests: list[tuple[int, int]] | None
) -> list[tuple[list[dict], bool]]:
    service, session = Beater(MatchingPercolator(all_of_them)), PublishingSession()
    service.session = session
    await service.deliver("events", documents, requests)
    return [
        (hits, acknowledged)
        for (_, hits, _, _), (_, acknowledged) in zip(session.made, session.acknowledged(), strict=True)
    ]


def request_sizes(*requests: list[dict]) -> list[tuple[int, int]]:
    return [(len(documents), len(json.dumps(documents))) for documents in requests]


@pytest_twisted.ensureDeferred
async def test_a_querys_hits_larger_than_an_event_holds_go_in_several_in_order():
    # Ten documents of 1 MiB, all matching: more than the router should take in one message.
    documents = [{"n": n, "blob": "x" * (1 << 20)} for n in range(10)]
    events = await published(documents, request_sizes(documents[:4], documents[4:]))
    assert [len(hits) for hits, _ in events] == [3, 3, 3, 1]
    assert [hit["_source"]["n"] for hits, _ in events for hit in hits] == list(range(10))
    assert all(len(cbor2.dumps(hits)) <= EVENT_BYTES for hits, _ in events)
    assert [acknowledged for _, acknowledged in events] == [False, False, False, True]


@pytest_twisted.ensureDeferred
async def test_a_hit_larger_than_an_event_holds_goes_alone():
    documents = [{"n": 0}, {"n": 1, "blob": "x" * (EVENT_BYTES + 1)}, {"n": 2}]
    events = await published(documents, request_sizes(documents))
    assert [[hit["_source"]["n"] for hit in hits] for hits, _ in events] == [[0], [1], [2]]


@pytest.mark.parametrize("known", [True, False], ids=["request sizes known", "unknown"])
@pytest_twisted.ensureDeferred
async def test_small_hits_of_a_query_go_in_one_event(known):
    documents = [{"n": n, "msg": "GET /api 200"} for n in range(1000)]
    events = await published(documents, request_sizes(documents[:500], documents[500:]) if known else None)
    assert [len(hits) for hits, _ in events] == [1000]


@pytest.mark.parametrize("fails", [False, True], ids=["highlighted", "engine-fails"])
@pytest_twisted.ensureDeferred
async def test_only_the_highlight_registrations_hits_carry_highlights_and_none_is_held_back(fails):
    # Two queries match both documents; the second was registered for highlights.
    highlights = (
        EngineUnavailable("the engine went away") if fails else {"b" * 16: {1: {"msg": ["<em>x</em>"]}}}
    )
    percolator = MatchingPercolator({"a" * 16: [0, 1], "b" * 16: [0, 1]}, {"b" * 16: "fields"}, highlights)
    service = Beater(percolator)
    service.session = session = PublishingSession()
    await service.deliver("events", [{"msg": "y"}, {"msg": "x"}], ids=["1", "2"])
    events = {topic: hits for topic, hits, _, _ in session.made}
    plain, marked = events["docs-for-" + "a" * 16], events["docs-for-" + "b" * 16]
    assert [api.HIGHLIGHT in hit for hit in plain] == [False, False]
    assert [hit["_id"] for hit in marked] == ["1", "2"]
    assert [hit.get(api.HIGHLIGHT) for hit in marked] == [None, None if fails else {"msg": ["<em>x</em>"]}]


# The feed: a Tailor (session 100) listens to A and B, a browser (200) to B and C.
A, B, C = "a" * 16, "b" * 16, "c" * 16


def _knowing(clock: Clock | None = None) -> Interest:
    """An Interest that has followed a router where Tailor 100 and browser 200 subscribe."""
    subscriptions = {n: {"id": n, "uri": api.topic(q), "match": "exact"} for n, q in enumerate((A, B, C), 1)}
    router = _Router(subscriptions, {1: [100], 2: [100, 200], 3: [200]}, tailors=[100])
    interest = Interest(grace=60, clock=clock or Clock())
    Deferred.fromCoroutine(interest.follow(router))
    return interest


async def _publications(interest, matches, documents, highlighted=None):
    percolator = MatchingPercolator(matches, {highlighted: "fields"} if highlighted else None)
    service = Beater(percolator, interest=interest)
    service.session = session = PublishingSession()
    await service.deliver(
        "events", documents, request_sizes(documents), ids=[str(n) for n in range(len(documents))]
    )
    return session.made


@pytest_twisted.ensureDeferred
async def test_a_batch_reaches_tailors_in_one_feed_event_and_others_on_their_topics():
    made = await _publications(_knowing(), {A: [0, 1], B: [1], C: [2]}, [{"n": n} for n in range(3)])
    by_topic = {topic: (hits, more, options) for topic, hits, more, options in made}
    assert [topic for topic, *_ in made] == [api.topic(B), api.topic(C), api.FEED]
    # A has only the Tailor: no event of its own. B's excludes Tailors (the feed has it), C's does not.
    assert by_topic[api.topic(B)][2].exclude_authrole == [api.TAILOR_ROLE]
    assert by_topic[api.topic(C)][2].exclude_authrole is None
    hits, more, options = by_topic[api.FEED]
    assert [hit["_id"] for hit in hits] == ["0", "1"]  # each hit once, document 2 matched C only
    assert more == {api.MATCHES: {A: [0, 1], B: [1]}}
    assert options.acknowledge and not options.exclude_authrole  # the batch's last publication


@pytest_twisted.ensureDeferred
async def test_without_a_tailor_listening_there_is_no_feed_event():
    made = await _publications(_knowing(), {C: [0]}, [{"n": 0}])
    assert [(topic, options.exclude_authrole, options.acknowledge) for topic, _, _, options in made] == [
        (api.topic(C), None, True)
    ]
    # Without following the router, who listens is not known: every event reaches everyone.
    made = await _publications(None, {A: [0], B: [0]}, [{"n": 0}])
    assert [(topic, options.exclude_authrole) for topic, _, _, options in made] == [
        (api.topic(A), None),
        (api.topic(B), None),
    ]


@pytest_twisted.ensureDeferred
async def test_a_query_registered_here_just_now_keeps_its_own_event_beside_the_feed():
    clock = Clock()
    interest = _knowing(clock)
    interest.touch(A)  # a browser may be subscribing to A: the router has not said so yet
    made = await _publications(interest, {A: [0]}, [{"n": 0}])
    assert [(topic, options.exclude_authrole) for topic, _, _, options in made] == [
        (api.topic(A), [api.TAILOR_ROLE]),
        (api.FEED, None),
    ]
    clock.advance(61)
    made = await _publications(interest, {A: [0]}, [{"n": 0}])
    assert [topic for topic, *_ in made] == [api.FEED]


@pytest_twisted.ensureDeferred
async def test_a_query_registered_for_highlights_is_never_on_the_feed():
    made = await _publications(_knowing(), {A: [0], B: [0]}, [{"n": 0}], highlighted=A)
    assert [(topic, options.exclude_authrole) for topic, _, _, options in made] == [
        (api.topic(A), None),  # its hits carry its own highlights: its event reaches Tailors too
        (api.topic(B), [api.TAILOR_ROLE]),
        (api.FEED, None),
    ]
    assert made[-1][2] == {api.MATCHES: {B: [0]}}


@pytest_twisted.ensureDeferred
async def test_a_feed_larger_than_an_event_holds_goes_in_several_each_with_its_own_positions():
    documents = [{"n": n, "blob": "x" * (1 << 20)} for n in range(10)]
    made = await _publications(_knowing(), {A: list(range(0, 10, 2)), B: list(range(10))}, documents)
    feed = [(hits, more[api.MATCHES]) for topic, hits, more, _ in made if topic == api.FEED]
    assert len(feed) > 1
    assert all(len(cbor2.dumps(hits)) <= EVENT_BYTES for hits, _ in feed)
    received = {A: [], B: []}
    for hits, matched in feed:
        for query_id, positions in matched.items():
            received[query_id].extend(hits[position]["_source"]["n"] for position in positions)
    assert received == {A: [0, 2, 4, 6, 8], B: list(range(10))}
    assert [options.acknowledge for *_, options in made] == [None] * (len(made) - 1) + [True]


# The presearcher: documents no listened-to query can match are not percolated.


class _Choosing:
    """A presearcher that picks the documents with ``"maybe": true``."""

    def candidates(self, index, documents, only):
        return [slot for slot, document in enumerate(documents) if document.get("maybe")]

    def anchored(self, index, only):
        return list(only)

    def remapped(self, index):
        pass


def every_candidate(documents: list[dict]) -> dict[str, list[int]]:
    return {A: list(range(len(documents)))}


async def _presearched(percolator: MatchingPercolator, documents: list[dict]) -> tuple[Beater, dict]:
    interest = Interest(clock=Clock())
    interest.touch(A)  # listened to: percolated for
    service = Beater(percolator, interest=interest, presearch=_Choosing())
    service.session = PublishingSession()
    return service, await service.deliver("events", documents)


@pytest_twisted.ensureDeferred
async def test_only_the_candidates_are_percolated_and_their_hits_keep_their_places():
    percolator = MatchingPercolator(every_candidate)
    documents = [{"n": 0}, {"n": 1, "maybe": True}, {"n": 2}, {"n": 3, "maybe": True}]
    service, matches = await _presearched(percolator, documents)
    assert [[d["n"] for d in documents] for documents in percolator.percolated] == [[1, 3]]
    assert matches == {A: [1, 3]}
    assert [hit["_source"]["n"] for hit in service.session.made[0][1]] == [1, 3]
    assert service.metrics.registry.get_sample_value("estrom_documents_not_percolated_total") == 2


@pytest_twisted.ensureDeferred
async def test_no_candidate_no_percolation_unless_a_query_may_have_been_registered_elsewhere():
    percolator = MatchingPercolator(every_candidate)
    _, matches = await _presearched(percolator, [{"n": 0}, {"n": 1}])
    assert percolator.percolated == [] and matches == {}
    # Another Beater registered a query this one has no anchor for: everything is percolated.
    percolator = MatchingPercolator(every_candidate, elsewhere=True)
    _, matches = await _presearched(percolator, [{"n": 0}, {"n": 1, "maybe": True}])
    assert [[d["n"] for d in documents] for documents in percolator.percolated] == [[0, 1]]
