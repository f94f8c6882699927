"""The aggregated tail, ``/api/v0.1/aggs``, on the real stack: frames whose counts, top values
and statistics are those of the documents that matched, a clear 400 for a bad parameter, and a
valid end."""

from __future__ import annotations

import random
import signal
from collections import Counter

import pytest
import pytest_twisted

from estrom.clients import AggsStream, docs_url, get, post
from estrom.sketch import ACCURACY

# Tailor does not talk to the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


@pytest_twisted.ensureDeferred
async def test_frames_count_what_matched_exactly(stack, index):
    stream = await AggsStream.open(
        stack.tailor_url, i=index, q="level:error", by="service,host", stats="ms", window="all", every="200ms"
    )
    sid = await stream.wait_for_head()
    assert stream.raw.startswith(b'{"subscription_id": "%s", "frames": [' % sid.encode())
    rng = random.Random(5)
    documents = []
    for n in range(300):
        document = {
            "level": rng.choice(["error", "error", "info"]),
            "service": rng.choice(["api", "web", "db"]),
        }
        if n % 7:
            document["host"] = [f"h{n % 3}", f"h{n % 3}", f"h{n % 5}"]  # each value once per document
        document["ms"] = round(rng.lognormvariate(4, 1), 3)
        documents.append(document)
    for start in range(0, 300, 50):
        status, _ = await post(docs_url(stack.beater_url, index), documents[start : start + 50])
        assert status == 200
    matched = [d for d in documents if d["level"] == "error"]
    frame = await stream.wait_for_frame(lambda f: f["count"] == len(matched))
    services = Counter(d["service"] for d in matched)
    assert frame["top"]["service"]["values"] == [
        [value, count] for value, count in sorted(services.items(), key=lambda item: (-item[1], item[0]))
    ]
    hosts = Counter(value for d in matched for value in set(d.get("host", [])))
    assert dict(frame["top"]["host"]["values"]) == dict(hosts)
    assert frame["top"]["host"]["missing"] == sum(1 for d in matched if "host" not in d)
    durations = sorted(d["ms"] for d in matched)
    stats = frame["stats"]["ms"]
    assert (stats["count"], stats["min"], stats["max"]) == (len(matched), durations[0], durations[-1])
    assert stats["avg"] == pytest.approx(sum(durations) / len(durations), rel=1e-12)
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = durations[int(q * (len(durations) - 1))]
        assert abs(stats[label] - exact) <= ACCURACY * exact * 1.000001
    assert sum(n for _, n in frame["histogram"]["buckets"]) == len(matched)
    assert frame["cursor"] is not None and "approximate" not in frame
    later = await stream.wait_for_frame(lambda f: f["at"] > frame["at"])
    assert later["count"] == len(matched) and later["rate"] == 0
    stream.close()


@pytest.mark.parametrize(
    "params, named",
    [
        ({"by": "a,,b"}, "'by'"),
        ({"k": "1000"}, "'k'"),
        ({"window": "1y"}, "'window'"),
        ({"histogram": "7s"}, "'histogram'"),
        ({"every": "1ms"}, "'every'"),
        ({"limit": "3"}, "limit"),
        ({"since": "15m", "window": "5m"}, "'since'"),
        ({"since": "15m"}, "keeps no documents"),  # this stack's Beater runs without the store
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_bad_parameter_is_a_400_that_names_it(stack, index, params, named):
    status, answer = await get(stack.tailor_url + "/api/v0.1/aggs", {"i": index, "q": "a", **params})
    assert status == 400 and named in answer["error"]


@pytest_twisted.ensureDeferred
async def test_shutdown_ends_the_frames_in_valid_json(stack, index):
    url = stack.start_tailor("tailor-aggs", port=stack.ports.tailor + 1)
    try:
        stream = await AggsStream.open(url, i=index, q="level:error", every="100ms")
        await stream.wait_for_head()
        await post(docs_url(stack.beater_url, index), {"level": "error"})
        await stream.wait_for_frame(lambda f: f["count"] == 1)
        stack.processes["tailor-aggs"].send_signal(signal.SIGTERM)
        body = await stream.wait_for_end()
        assert body["frames"][-1]["count"] == 1 and "error" not in body
    finally:
        assert stack.stop("tailor-aggs") in (0, -signal.SIGTERM)
