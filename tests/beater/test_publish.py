"""Publishing a percolation's hits: the router going away is "retry"; a bug is not."""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet.defer import fail, succeed

from beater.service import Beater, RouterUnavailable


class _Percolator:
    async def percolate(self, index, documents, only=None):
        return {"0123456789abcdef": [0]}


class _Session:
    def __init__(self, error: Exception | None):
        self.error = error

    def publish(self, topic, *hits, options=None):
        return fail(self.error) if self.error else succeed(None)


def beater(error: Exception | None) -> Beater:
    service = Beater(_Percolator())
    service.session = _Session(error)
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
