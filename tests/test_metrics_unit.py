"""What /metrics counts and how it is bounded (estrom/metrics.py); the counts themselves against
the real stack are in tests/e2e/test_team.py."""

from __future__ import annotations

import pytest_twisted
from prometheus_client.exposition import generate_latest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from estrom.metrics import MAX_INDEX_LABELS, OTHER_INDEXES, BeaterMetrics, IndexLabels, MetricsResource
from estrom.tokens import ANONYMOUS, Principal


def test_index_labels_are_bounded_and_refusals_never_make_one():
    labels = IndexLabels(limit=3)
    assert [labels(name) for name in ("a", "b", "c", "d", "a")] == ["a", "b", "c", OTHER_INDEXES, "a"]
    assert labels.known("a") == "a" and labels.known("made-up") == OTHER_INDEXES


def test_a_sender_making_up_indexes_does_not_grow_the_metrics():
    metrics = BeaterMetrics()
    for n in range(MAX_INDEX_LABELS * 3):
        metrics.took(f"index-{n}", 1)
        metrics.refused(f"refused-{n}", 1, 403)
    text = generate_latest(metrics.registry).decode()
    assert text.count("estrom_documents_accepted_total{") == MAX_INDEX_LABELS + 1
    assert text.count("estrom_documents_rejected_total{") == 1  # all under _other
    assert f'estrom_documents_accepted_total{{index="{OTHER_INDEXES}"}} {MAX_INDEX_LABELS * 2}.0' in text


def _get(resource: MetricsResource, principal: Principal) -> tuple[DummyRequest, Deferred]:
    request = DummyRequest([b""])
    request.principal = principal
    request.method = b"GET"
    finished = request.notifyFinish()
    resource.render(request)
    return request, finished


@pytest_twisted.ensureDeferred
async def test_a_flood_of_scrapes_asks_the_router_once_per_second_and_needs_a_token_that_reads_all():
    asked, gate = [], Deferred()

    async def refresh() -> None:
        asked.append(1)
        await gate

    now = Clock()  # seconds() is the time
    now.advance(100)
    resource = MetricsResource(BeaterMetrics(), refresh, clock=now.seconds)
    request, _ = _get(resource, Principal("alice", read=("logs-*",)))
    assert request.responseCode == 403
    scrapes = [_get(resource, ANONYMOUS) for _ in range(50)]
    gate.callback(None)
    for request, finished in scrapes:
        await finished
        assert b"estrom_queue_documents" in b"".join(request.written)
    assert len(asked) == 1
    now.advance(1.5)
    _, finished = _get(resource, ANONYMOUS)
    await finished
    assert len(asked) == 2
