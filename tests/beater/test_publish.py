"""Publishing a percolation's hits on the running system: a publication that fails otherwise
than a lost router (a bug) leaves no copy of its documents in the store."""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.wamp.exception import SerializationError

from beater.engine import Engine
from beater.identity import identify
from beater.percolator import Percolator
from beater.service import Beater
from beater.store import Store
from estrom.clients import http


class _FailsSecond:
    """A session whose second publication of a batch cannot be sent (as autobahn's
    SerializationError): the first has gone out."""

    def __init__(self):
        self.published: list[str] = []

    def publish(self, topic, *hits, options=None):
        if self.published:
            raise SerializationError("cannot serialize this event")
        self.published.append(topic)


@pytest_twisted.ensureDeferred
async def test_a_publication_that_fails_otherwise_than_a_lost_router_leaves_no_copy_in_the_store(
    stack, index
):
    engine = Engine(stack.engine_url)
    percolator, store = Percolator(engine), Store(engine)
    service = Beater(percolator, store=store)
    session = service.session = _FailsSecond()
    await store.ensure(index)
    for query in ("a:1", "b:1"):
        await percolator.store(identify(index, query))
    with pytest.raises(SerializationError):  # a bug: a 500 for the sender, not "retry"
        await service.deliver(index, [{"a": 1, "b": 1}], ids=["sent-once"])
    assert len(session.published) == 1
    await http.post(f"{stack.engine_url}/{index}/_refresh")
    response = await http.get(f"{stack.engine_url}/{index}/_doc/sent-once")
    assert (await response.json())["found"] is False  # the sender will send it again: no copy stays
