"""``estrom top --since``: the stored matches counted first, then the live ones."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import reactor

from estrom.clients import ProcessLines, docs_url, eventually, post
from tests.cli.test_top import ESTROM

# The command does not depend on the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


@pytest_twisted.ensureDeferred
async def test_top_since_counts_the_stored_matches_then_the_live_ones(stored, index):
    stack = stored
    documents = [{"level": "error", "service": "api", "ms": 5}] * 3 + [
        {"level": "error", "service": "db", "ms": 7}
    ]
    status, answer = await post(docs_url(stack.beater_url, index), documents)
    assert status == 200, answer
    out = ProcessLines()
    args = [ESTROM, "top", "--url", stack.tailor_url, "-i", index, "level:error"]
    args += ["--by", "service", "--stats", "ms", "--since", "1h", "--json", "--every", "100ms"]
    process = reactor.spawnProcess(out, ESTROM, args, env=None)
    try:
        await out.wait_for(lambda: bool(out.lines) or out.ended, what="a first frame")
        first = json.loads(out.lines[0])
        assert first["count"] == 4, first
        assert first["top"]["service"]["values"] == [["api", 3], ["db", 1]]
        assert first["stats"]["ms"]["count"] == 4 and first["stats"]["ms"]["max"] == 7
        assert first["rate"] == 0  # the stored ones are not a rate
        await post(docs_url(stack.beater_url, index), [{"level": "error", "service": "db", "ms": 9}])

        def counted() -> bool:
            frame = json.loads(out.lines[-1])
            return frame["count"] == 5 and frame["top"]["service"]["values"] == [["api", 3], ["db", 2]]

        await eventually(counted, what="the live match counted after the stored ones")
        out.transport.signalProcess("INT")
        await out.wait_for(lambda: out.ended, what="estrom top to end on Ctrl-C")
        assert out.status == 0, out.stderr
    finally:
        if not out.ended:
            process.signalProcess("KILL")
