"""The same numbers as the engine: documents posted through estrom (to two Beaters) are also
indexed in an index of the test's own with an explicit mapping, and for generated queries the
aggregated tail's frames, joined to a backfill from the store at the seam, and
``estrom.summary`` over WAMP, are compared with the engine's own ``terms`` and ``stats``
aggregations of ``_search`` for the same query: counts, top values and min/max/avg equal,
percentiles within the sketch's stated error of the exact ones.

Seeded (ESTROM_DIFF_SEED, default 23); `make differential` runs it at length
(ESTROM_DIFF_DOCS, ESTROM_DIFF_QUERIES)."""

from __future__ import annotations

import json
import math
import os
import random

import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from estrom import api
from estrom.clients import AggsStream, http, post, wamp_session
from estrom.sketch import ACCURACY
from tests.conftest import STORE

_SEED = os.environ.get("ESTROM_DIFF_SEED", "23")
SEED = random.SystemRandom().randrange(2**32) if _SEED == "random" else int(_SEED)
DOCS = int(os.environ.get("ESTROM_DIFF_DOCS", "400"))  # before the seam, and as many after
QUERIES = int(os.environ.get("ESTROM_DIFF_QUERIES", "3"))
BY = ("service", "host", "tags")
STATS = ("ms", "bytes")
MAPPING = {
    "properties": {
        "service": {"type": "keyword"},
        "host": {"type": "keyword"},
        "tags": {"type": "keyword"},
        "level": {"type": "keyword"},
        "ms": {"type": "double"},
        "bytes": {"type": "long"},
        "seq": {"type": "long"},
    }
}
SEQUENCE: list[int] = []  # each document's number, to page through them in order


def documents(chance: random.Random, count: int) -> list[dict]:
    made = []
    for _ in range(count):
        document: dict = {"level": chance.choice(["info", "warn", "error"]), "seq": len(SEQUENCE)}
        SEQUENCE.append(document["seq"])
        if chance.random() < 0.9:
            document["service"] = chance.choice(["api", "web", "db", "queue", "auth", "billing"])
        document["host"] = f"h{chance.randrange(40)}"
        document["tags"] = chance.sample(["a", "b", "c", "d"], chance.randrange(3))
        if chance.random() < 0.95:
            document["ms"] = round(chance.lognormvariate(3, 1.2), 3)
        if chance.random() < 0.8:
            document["bytes"] = chance.randrange(10**7)
        made.append(document)
    return made


def queries(chance: random.Random) -> list[str]:
    made = ["level:error", "service:(api OR db) AND NOT level:info", "ms:[10 TO *]"]
    while len(made) < QUERIES:
        made.append(f"host:h{chance.randrange(40)} OR level:{chance.choice(['warn', 'error'])}")
    return made[:QUERIES]


async def engine(stack, method: str, path: str, body: object = None) -> dict:
    data = None
    if isinstance(body, bytes):
        data = body
    elif body is not None:
        data = json.dumps(body).encode()
    response = await http.request(
        method, stack.engine_url + path, data=data, headers={"Content-Type": "application/json"}
    )
    answer = await response.json()
    assert response.code < 300, answer
    return answer


async def expected(stack, reference: str, query: str) -> dict:
    """The engine's own aggregations of ``query`` over the reference index."""
    aggregations: dict = {}
    for name in BY:
        aggregations[f"top-{name}"] = {"terms": {"field": name, "size": 1000}}
        aggregations[f"missing-{name}"] = {"missing": {"field": name}}
    for name in STATS:
        aggregations[f"stats-{name}"] = {"stats": {"field": name}}
    answer = await engine(
        stack,
        "POST",
        f"/{reference}/_search",
        {
            "size": 0,
            "track_total_hits": True,
            "query": {"query_string": {"query": query}},
            "aggs": aggregations,
        },
    )
    found = answer["aggregations"]
    return {
        "count": answer["hits"]["total"]["value"],
        "top": {
            name: {
                "values": [[b["key"], b["doc_count"]] for b in found[f"top-{name}"]["buckets"]],
                "missing": found[f"missing-{name}"]["doc_count"],
            }
            for name in BY
        },
        "stats": {name: found[f"stats-{name}"] for name in STATS},
    }


async def exact_values(stack, reference: str, query: str, name: str) -> list[float]:
    """Every value of ``name`` in the documents ``query`` matches, in order."""
    values: list[float] = []
    after = None
    while True:
        body: dict = {
            "size": 5_000,
            "_source": [name],
            "sort": [{"seq": "asc"}],
            "query": {"query_string": {"query": query}},
        }
        if after is not None:
            body["search_after"] = after
        hits = (await engine(stack, "POST", f"/{reference}/_search", body))["hits"]["hits"]
        if not hits:
            return sorted(values)
        values += [hit["_source"][name] for hit in hits if name in hit["_source"]]
        after = hits[-1]["sort"]


def same(got: dict, want: dict, values: dict[str, list[float]], what: str) -> None:
    what = f"seed {SEED}: {what}"
    assert got["count"] == want["count"], what
    for name in BY:
        top = got["top"][name]
        assert top["values"] == want["top"][name]["values"], (what, name)
        assert top["missing"] == want["top"][name]["missing"], (what, name)
        assert top["other"] == 0 and "approximate" not in top, (what, name)
    for name in STATS:
        stats, engine_stats = got["stats"][name], want["stats"][name]
        assert stats["count"] == engine_stats["count"], (what, name)
        if not stats["count"]:
            continue
        assert stats["min"] == engine_stats["min"] and stats["max"] == engine_stats["max"], (what, name)
        assert math.isclose(stats["avg"], engine_stats["avg"], rel_tol=1e-9), (what, name)
        ranked = values[name]
        for label, quantile in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            exact = ranked[int(quantile * (len(ranked) - 1))]
            assert abs(stats[label] - exact) <= ACCURACY * abs(exact) * 1.000001, (what, name, label)


async def send(beater_url: str, index: str, batch: list[dict]) -> None:
    for start in range(0, len(batch), 100):
        status, answer = await post(f"{beater_url}/api/v0.1/docs/{index}", batch[start : start + 100])
        assert status == 200, answer


@pytest_twisted.ensureDeferred
async def test_frames_and_summaries_are_the_engines_own_aggregations(stored, index):
    stack = stored
    print(f"differential: seed {SEED}, {DOCS} documents each side of the seam, {QUERIES} queries")
    chance = random.Random(SEED)
    reference = f"ref-{index}"[:200]
    await http.delete(f"{stack.engine_url}/{reference}")
    await engine(stack, "PUT", f"/{reference}", {"mappings": MAPPING})
    second = stack.start_beater("beater-second", port=stack.ports.beater + 21, **STORE)
    beaters = [stack.beater_url, second]
    try:
        before, after = documents(chance, DOCS), documents(chance, DOCS)
        body = "".join(
            json.dumps({"index": {}}) + "\n" + json.dumps(document) + "\n" for document in before + after
        )
        await engine(stack, "POST", f"/{reference}/_bulk?refresh=true", body.encode())
        # Before the seam: half through each Beater, stored.
        await send(beaters[0], index, before[: DOCS // 2])
        await send(beaters[1], index, before[DOCS // 2 :])
        session = await wamp_session(stack.router_url)
        try:
            streams = []
            for query in queries(chance):
                sid = await session.call(api.REGISTER, index, query)
                stream = await AggsStream.open(
                    stack.tailor_url,
                    s=sid,
                    since="1h",
                    by=",".join(BY),
                    stats=",".join(STATS),
                    k="100",
                    every="200ms",
                )
                await stream.wait_for_head()
                streams.append((query, sid, stream))
            # After it: live, again through both Beaters.
            await send(beaters[1], index, after[: DOCS // 2])
            await send(beaters[0], index, after[DOCS // 2 :])
            for query, sid, stream in streams:
                want = await expected(stack, reference, query)
                values = {name: await exact_values(stack, reference, query, name) for name in STATS}
                frame = await stream.wait_for_frame(lambda f, n=want["count"]: f["count"] >= n)
                same(frame, want, values, f"the frame of {query!r}")
                summary = await session.call(
                    api.SUMMARY, sid, {"by": list(BY), "stats": list(STATS), "k": 100, "since": "1h"}
                )
                same(summary, want, values, f"the summary of {query!r}")
                stream.close()
            # Refused with a reason: an option it does not know, statistics of a keyword.
            for options, says in (({"top": 3}, "unknown option"), ({"stats": ["service"]}, "not a number")):
                try:
                    await session.call(api.SUMMARY, streams[0][1], options)
                except ApplicationError as e:
                    assert e.error == api.INVALID_ARGUMENT and says in e.args[0], e
                else:
                    raise AssertionError(f"{options} was not refused")
        finally:
            session.leave()
    finally:
        stack.stop("beater-second")
