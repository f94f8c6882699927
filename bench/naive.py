"""``python -m bench.naive``: Beater as the seed designed it, the benchmark's baseline.

Every document is percolated on its own, in a request of its own, on arrival: with
``ESTROM_BATCH_MAX_DOCS=1`` no two requests share a batch, and here no two documents of one
request share a percolation either. At most ``ESTROM_PERCOLATIONS_IN_FLIGHT`` of them are at the
engine at once (its pool of connections), the rest wait their turn: before that bound, 32 senders
of 100 documents put 3,200 percolations at the engine at once, past its search queue, and the
baseline measured the engine's rejections (5 and 12 documents/s, requests lost) instead of the
design. The rest (registration, publishing, limits) is Beater's.
"""

from __future__ import annotations

import uuid

from twisted.internet.defer import Deferred, DeferredSemaphore, FirstError, gatherResults

import beater.__main__
from beater.service import Beater

Sizes = list[tuple[int, int]]  # (documents, bytes) of each request that carried a batch


class OneByOne(Beater):
    """A Beater that percolates each document of a batch in an engine request of its own."""

    _percolating: DeferredSemaphore | None = None

    async def deliver(
        self,
        index: str,
        documents: list[dict],
        requests: Sizes | None = None,
        ids: list[str] | None = None,
        named: list[bool] | None = None,
    ) -> dict[str, list[int]]:
        if len(documents) == 1:
            return await super().deliver(index, documents, requests, ids, named)
        ids = ids or [uuid.uuid4().hex for _ in documents]
        if self._percolating is None:
            self._percolating = DeferredSemaphore(self.pipeline.in_flight)
        deliver = super().deliver

        def alone(document: dict, document_id: str, given: bool) -> Deferred:
            """The document in an engine request of its own, once one of the pool's is free."""
            return Deferred.fromCoroutine(deliver(index, [document], None, [document_id], [given]))

        try:
            results = await gatherResults(
                [
                    self._percolating.run(alone, document, document_id, given)
                    for document, document_id, given in zip(
                        documents, ids, named or [False] * len(documents), strict=True
                    )
                ],
                consumeErrors=True,
            )
        except FirstError as e:
            e.subFailure.raiseException()
        merged: dict[str, list[int]] = {}
        for position, matches in enumerate(results):
            for query_id in matches:
                merged.setdefault(query_id, []).append(position)
        return merged


if __name__ == "__main__":
    beater.__main__.Beater = OneByOne  # the only change: which Beater main() builds
    beater.__main__.main()
