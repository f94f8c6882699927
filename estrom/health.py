"""``/healthz`` and ``/readyz`` of Beater and Tailor, for container healthchecks and load balancers.

``/healthz`` answers 200 while the process serves HTTP at all. ``/readyz`` runs the service's
checks (is the engine reachable, is the router joined, does a Beater answer) and answers 200 when
all pass, else 503, with what each said. Neither needs a token; neither says more than "ok" or
why not. A check's outcome is kept for ``CHECK_EVERY`` seconds and one check runs at a time, so a
flood of probes costs the engine and the router nothing more than one probe does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Request

from estrom.coalesce import Coalesce
from estrom.http import JsonResource, answer_later, json_answer, send_json

CHECK_EVERY = 1.0
HEALTH_PATHS = frozenset({b"/healthz", b"/readyz"})

# A check: None when all is well, else why not (a short sentence).
Check = Callable[[], Awaitable[str | None]]


class Healthz(JsonResource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return json_answer(request, 200, {"status": "ok"})


class Readyz(JsonResource):
    """``checks``: by name, the service's checks."""

    isLeaf = True

    def __init__(self, checks: dict[str, Check], clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.checks = checks
        self.clock = clock
        self._coalesce = Coalesce()
        self._last: tuple[float, dict[str, str]] | None = None

    def render_GET(self, request: Request) -> int:
        return answer_later(request, self._answer(request), "readiness")

    async def _answer(self, request: Request) -> None:
        outcome = await self.outcome()
        ready = all(said == "ok" for said in outcome.values())
        send_json(request, 200 if ready else 503, {"ready": ready, "checks": outcome})

    async def outcome(self) -> dict[str, str]:
        """By check, "ok" or why not; checked at most once per CHECK_EVERY seconds."""
        if self._last is not None and self.clock() - self._last[0] < CHECK_EVERY:
            return self._last[1]
        return await self._coalesce.run(None, lambda: Deferred.fromCoroutine(self._run()))

    async def _run(self) -> dict[str, str]:
        outcome = {}
        for name, check in self.checks.items():
            outcome[name] = await check() or "ok"
        self._last = (self.clock(), outcome)
        return outcome


def add_health(root: Resource, checks: dict[str, Check]) -> None:
    """Serve ``/healthz`` and ``/readyz`` (with ``checks``) beside ``root``'s other children."""
    root.putChild(b"healthz", Healthz())
    root.putChild(b"readyz", Readyz(checks))
