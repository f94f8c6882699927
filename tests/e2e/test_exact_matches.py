"""What a live subscription delivers is exactly what the engine's own search finds.

A generated corpus (keywords, text, integers, floats, dates, arrays, objects, missing fields) is
indexed in the engine and also sent through estrom, once per case; thousands of generated
queries (Lucene strings without and with groups, DSL ``bool`` clauses) are registered and
listened to. For each query, the documents delivered for its ID must be the ones the engine's
``_search`` returns for it, and queries that share an ID must find the same documents.

Cases: a source index with an explicit mapping; no source index (estrom maps unknown fields as
text), compared with an index made with the percolator index's mapping; a source index whose
mapping grows between registrations. ``make exact`` runs a longer, random search.
"""

from __future__ import annotations

import functools
import json
import os
import random
from collections import defaultdict
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore

from beater.presearch import Anchors, anchor, read_mapping
from estrom import api
from estrom.clients import eventually, grew, http, post, scrape, wamp_session
from tests.fuzz.test_stack import sample

QUERIES = int(os.environ.get("ESTROM_EXACT_QUERIES", "500"))
OTHER_CASES = max(QUERIES // 5, 200)  # queries for the unmapped and the growing case
DOCUMENTS = int(os.environ.get("ESTROM_EXACT_DOCUMENTS", "160"))
# The corpus's seed: fixed, unless the queries are random too (then printed, to repeat a run).
SEED = int(
    os.environ.get("ESTROM_EXACT_SEED")
    or (random.randrange(1_000_000) if os.environ.get("ESTROM_FUZZ_RANDOM") == "1" else 8)
)
if os.environ.get("ESTROM_FUZZ_RANDOM") == "1":
    print(f"test_exact_matches: corpus seed {SEED} (ESTROM_EXACT_SEED={SEED} repeats it)")

# --- the corpus -------------------------------------------------------------------------------

MAPPING = {
    "level": {"type": "keyword"},
    "service": {"type": "keyword"},
    "msg": {"type": "text"},
    "status": {"type": "integer"},
    "latency": {"type": "double"},
    "ts": {"type": "date"},
    "tags": {"type": "keyword"},
    "host": {"properties": {"name": {"type": "keyword"}, "region": {"type": "keyword"}}},
}
FIRST_FIELDS = ("level", "service", "msg")  # the growing case starts with these

_WORDS = ["disk", "full", "connection", "reset", "host", "timeout", "Disk", "error", "api", "peer"]


def corpus(seed: int, count: int) -> list[dict]:
    """``count`` documents, the same for a seed; each has its number ``n`` and misses fields."""
    rnd = random.Random(seed)
    documents = []
    for n in range(count):
        document: dict[str, Any] = {"n": n}
        candidates = {
            "level": lambda: rnd.choice(["error", "warn", "info", "Error", "disk full", "error warn"]),
            "service": lambda: rnd.choice(["api", "db", "web", "api-gw"]),
            "msg": lambda: " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(1, 5))),
            "status": lambda: rnd.choice([200, 201, 404, 499, 500, 503]),
            "latency": lambda: round(rnd.uniform(0, 1000), rnd.choice([0, 1, 2])),
            "ts": lambda: f"2026-11-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:00:00Z",
            "tags": lambda: rnd.sample(["a", "b", "c"], rnd.randint(0, 3)),
            "host": lambda: {
                key: value
                for key, value in (
                    ("name", rnd.choice(["web-1", "web-2", "db-1"])),
                    ("region", rnd.choice(["eu", "us"])),
                )
                if rnd.random() < 0.8
            },
        }
        for field, make in candidates.items():
            if rnd.random() < 0.75:
                document[field] = make()
        documents.append(document)
    return documents


# --- the queries ------------------------------------------------------------------------------

ATOMS = [
    "level:error",
    "level:warn",
    "level:Error",
    "level:(error OR warn)",
    "level:(error warn)",
    'level:"disk full"',
    "level:err*",
    "level:e?ror",
    "level:/e.*r/",
    "level:eror~1",
    "level:error^2",
    "service:api",
    "service:api\\-gw",
    "service:ap*",
    "service:(api db)",
    "msg:disk",
    "msg:full^0.5",
    'msg:"disk full"',
    'msg:"disk host"~3',
    "msg:dsk~1",
    "msg:conn*",
    "msg:(disk OR reset)",
    "msg:(disk reset)",
    "status:500",
    "status:[400 TO 499]",
    "status:{200 TO 500]",
    "status:>=500",
    "status:<300",
    "status:[* TO 404}",
    "latency:[100 TO *]",
    "latency:{* TO 50.5}",
    "latency:>=250.25",
    "ts:[2026-11-10 TO 2026-11-20]",
    "ts:>2026-11-15",
    "ts:{2026-11-01T00:00:00Z TO 2026-11-05]",
    "tags:a",
    "tags:(a AND b)",
    "host.name:web-1",
    "host.name:web*",
    "host.region:eu",
    "_exists_:latency",
    "_exists_:host.name",
    "_exists_:tags",
    "disk",
    "error",
    "api",
    "Disk",
    "disk full",
    "500",
]


def _clause(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(ATOMS),
        st.tuples(inner, st.sampled_from(["", "", "^2"])).map(lambda t: f"({t[0]}){t[1]}"),
        st.tuples(st.sampled_from(["level", "msg", "service"]), inner).map(lambda t: f"{t[0]}:({t[1]})"),
    )


def _expression(clause: st.SearchStrategy) -> st.SearchStrategy:
    part = st.tuples(
        st.sampled_from(["", "", "AND ", "OR ", "&& ", "|| "]),
        st.sampled_from(["", "", "", "+", "-", "NOT ", "!"]),
        clause,
    )
    return st.tuples(
        st.sampled_from(["", "", "+", "-", "NOT "]), clause, st.lists(part, min_size=0, max_size=4)
    ).map(lambda t: " ".join([t[0] + t[1]] + [f"{conj}{mod}{c}" for conj, mod, c in t[2]]))


lucene_queries = st.recursive(st.sampled_from(ATOMS), lambda inner: _expression(_clause(inner)), max_leaves=8)

DSL_LEAVES = [
    {"term": {"level": "error"}},
    {"term": {"level": {"value": "Error"}}},
    {"terms": {"tags": ["a", "c"]}},
    {"match": {"msg": "disk full"}},
    {"match": {"msg": {"query": "disk full", "operator": "and"}}},
    {"match_phrase": {"msg": "disk full"}},
    {"range": {"status": {"gte": 400, "lt": 500}}},
    {"range": {"latency": {"gt": 99.5}}},
    {"range": {"ts": {"gte": "2026-11-15"}}},
    {"exists": {"field": "host.region"}},
    {"prefix": {"service": "ap"}},
    {"wildcard": {"host.name": "web*"}},
]

dsl_queries = st.recursive(
    st.one_of(
        st.sampled_from(DSL_LEAVES), lucene_queries.map(lambda text: {"query_string": {"query": text}})
    ),
    lambda inner: st.builds(
        lambda must, filter_, should, must_not, minimum: {
            "bool": {
                key: value
                for key, value in (
                    ("must", must),
                    ("filter", filter_),
                    ("should", should),
                    ("must_not", must_not),
                    ("minimum_should_match", minimum),
                )
                if value not in ([], None)
            }
            or {"must": [{"match_all": {}}]}
        },
        st.lists(inner, max_size=2),
        st.lists(inner, max_size=2),
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=2),
        st.sampled_from([None, None, 1, 2, "50%"]),
    ),
    max_leaves=6,
)

all_queries = st.one_of(lucene_queries, lucene_queries, dsl_queries)


@functools.cache
def _generated() -> list:
    # Generated once for all cases and both engines (it takes a while), before any WAMP session
    # is open: the router closes a session whose client does not answer its pings meanwhile.
    return sample(all_queries, QUERIES + 2 * OTHER_CASES)


def queries(part: int) -> list:
    """The generated queries (seeded) of one case (0: the mapped index, 1 and 2: the others),
    and for some of them a spelling the engine reads alike (``(q)``), so that shared IDs are
    exercised too."""
    start = 0 if part == 0 else QUERIES + (part - 1) * OTHER_CASES
    found = _generated()[start : start + (QUERIES if part == 0 else OTHER_CASES)]
    return found + [f"({query})" for query in found[::7] if isinstance(query, str)]


# --- the check --------------------------------------------------------------------------------


class Exact:
    """Registers queries on one index, delivers the corpus, and compares with the engine."""

    def __init__(self, stack, index: str, watcher, beater_url: str | None = None):
        self.stack, self.index, self.watcher = stack, index, watcher
        self.beater_url = beater_url or stack.beater_url
        self.ids: dict[str, list] = defaultdict(list)  # ID -> queries registered with it
        self.refused: list = []

    async def register(self, queries: list) -> None:
        limit = DeferredSemaphore(8)

        async def one(query) -> None:
            try:
                sid = await self.watcher.call(api.REGISTER, self.index, query)
            except ApplicationError as e:
                self.refused.append((query, e.error, e.args))
                return
            self.ids[sid].append(query)

        await DeferredList(
            [limit.run(lambda q=q: Deferred.fromCoroutine(one(q))) for q in queries],
            fireOnOneErrback=True,
        )

    async def send(self, documents: list[dict]) -> None:
        for start in range(0, len(documents), 40):
            status, answer = await post(
                f"{self.beater_url}/api/v0.1/docs/{self.index}", documents[start : start + 40]
            )
            assert status == 200, answer

    async def searched(self, index: str, queries: list) -> list[set[int] | str]:
        """The engine's own search for each query on ``index``: the numbers found, or its error."""
        results: list[set[int] | str] = []
        for start in range(0, len(queries), 200):
            lines = []
            for query in queries[start : start + 200]:
                clause = {"query_string": {"query": query}} if isinstance(query, str) else query
                lines += [{"index": index}, {"query": clause, "size": 10_000, "_source": False}]
            answer = await engine(self.stack, "POST", "/_msearch", lines)
            for response in answer["responses"]:
                if "error" in response:
                    results.append(json.dumps(response["error"])[:300])
                else:
                    results.append({int(hit["_id"]) for hit in response["hits"]["hits"]})
        return results

    async def check(self, delivered: dict[str, set[int]], search_index: str) -> None:
        ids = list(self.ids)
        flat = [(sid, query) for sid in ids for query in self.ids[sid]]
        found = await self.searched(search_index, [query for _, query in flat])
        by_id: dict[str, list] = defaultdict(list)
        for (sid, query), result in zip(flat, found, strict=True):
            by_id[sid].append((query, result))
        wrong = []
        for sid, results in by_id.items():
            first_query, first = results[0]
            if isinstance(first, str):
                wrong.append(f"{first_query!r}: registered, but the engine's search fails: {first}")
                continue
            if delivered.get(sid, set()) != first:
                missing, extra = (
                    sorted(first - delivered.get(sid, set())),
                    sorted(delivered.get(sid, set()) - first),
                )
                wrong.append(f"{first_query!r} ({sid}): missed {missing[:10]}, extra {extra[:10]}")
            for query, result in results[1:]:
                if result != first:
                    wrong.append(
                        f"{first_query!r} and {query!r} share the ID {sid} but find different documents"
                    )
        refused_by_engine = await self.searched(search_index, [query for query, _, _ in self.refused])
        for (query, error, args), result in zip(self.refused, refused_by_engine, strict=True):
            if not isinstance(result, str):
                wrong.append(f"{query!r}: refused ({error}: {args}), but the engine runs it")
        assert not wrong, f"{len(wrong)} of {len(by_id)} IDs differ:\n" + "\n".join(wrong[:40])
        assert len(by_id) > len(ids) // 2


async def engine(stack, method: str, path: str, body: Any = None) -> Any:
    if isinstance(body, list):
        data = b"".join(json.dumps(line).encode() + b"\n" for line in body)
        content_type = "application/x-ndjson"
    else:
        data, content_type = (json.dumps(body).encode() if body is not None else None), "application/json"
    response = await http.request(
        method, stack.engine_url + path, data=data, headers={"Content-Type": content_type}, timeout=120
    )
    answer = json.loads(await response.content())
    assert response.code < 300 or path == "/_msearch", answer
    return answer


async def index_corpus(stack, index: str, documents: list[dict], properties: dict | None) -> None:
    if properties is not None:
        await engine(
            stack,
            "PUT",
            f"/{index}",
            {"settings": {"number_of_replicas": 0}, "mappings": {"properties": properties}},
        )
    lines = []
    for document in documents:
        lines += [{"index": {"_index": index, "_id": str(document["n"])}}, document]
    answer = await engine(stack, "POST", "/_bulk?refresh=true", lines)
    assert not answer["errors"], [item for item in answer["items"] if "error" in item["index"]][:3]


async def listen(stack):
    """A watcher session subscribed to every topic; the numbers delivered per query ID."""
    session = await wamp_session(stack.router_url, {"ticket": {"authid": "watcher", "ticket": stack.watcher}})
    delivered: dict[str, set[int]] = defaultdict(set)

    def received(*hits, details=None):
        delivered[details.topic[len(api.TOPIC_PREFIX) :]].update(hit["_source"]["n"] for hit in hits)

    await session.subscribe(
        received, api.TOPIC_PREFIX, SubscribeOptions(match="prefix", details_arg="details")
    )
    return session, delivered


async def settled(session, exact: Exact) -> None:
    """Every event published before now has reached ``session``: the router sends events
    before it acknowledges their publication (and Beater answers a POST after that), and the
    answer to this call after them."""
    await session.call(api.LOOKUP, next(iter(exact.ids)))


async def deliver(stack, index: str, documents: list[dict], generated: list, between=None):
    """Register ``generated`` on ``index`` (half of them, then ``between()``, then the rest),
    send ``documents`` through Beater, and return the Exact and what was delivered per ID."""
    session, delivered = await listen(stack)
    try:
        exact = Exact(stack, index, session)
        half = len(generated) // 2 if between else len(generated)
        await exact.register(generated[:half])
        if between:
            await between()
        await exact.register(generated[half:])
        await exact.send(documents)
        await settled(session, exact)
        return exact, delivered
    finally:
        session.leave()


@pytest_twisted.ensureDeferred
async def test_deliveries_are_the_engines_search_results_on_a_mapped_index(stack, index):
    documents, generated = corpus(SEED, DOCUMENTS), queries(0)
    await index_corpus(stack, index, documents, MAPPING)
    exact, delivered = await deliver(stack, index, documents, generated)
    await exact.check(delivered, index)


@pytest_twisted.ensureDeferred
async def test_deliveries_without_a_source_index_are_a_search_on_the_same_mapping(stack, index):
    documents, generated = corpus(SEED + 1, DOCUMENTS), queries(1)
    exact, delivered = await deliver(stack, index, documents, generated)
    made = (await engine(stack, "GET", f"/estrom-queries-{index}"))[f"estrom-queries-{index}"]
    copy = index + "-copy"
    default_fields = made["settings"]["index"]["query"]["default_field"]
    settings = {"number_of_replicas": 0, "index.query.default_field": default_fields}
    await engine(stack, "PUT", f"/{copy}", {"settings": settings, "mappings": made["mappings"]})
    await index_corpus(stack, copy, documents, None)
    await exact.check(delivered, copy)


@pytest_twisted.ensureDeferred
async def test_deliveries_follow_a_source_mapping_that_grows(stack, index):
    documents, generated = corpus(SEED + 2, DOCUMENTS), queries(2)
    first = {"properties": {field: MAPPING[field] for field in FIRST_FIELDS}}
    await engine(stack, "PUT", f"/{index}", {"settings": {"number_of_replicas": 0}, "mappings": first})

    async def grow() -> None:
        await engine(stack, "PUT", f"/{index}/_mapping", {"properties": MAPPING})

    exact, delivered = await deliver(stack, index, documents, generated, between=grow)
    await index_corpus(stack, index, documents, None)
    await exact.check(delivered, index)


# --- the presearcher -------------------------------------------------------------------------

# A Beater whose listened-to window is short: once the registrations are older than it, it
# percolates only for the subscriptions, and the presearcher can leave documents out.
PRESEARCH_WINDOW = "1"


@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "unmapped"])
@pytest_twisted.ensureDeferred
async def test_with_the_presearcher_deliveries_are_still_the_engines_search_results(stack, index, mapped):
    """Exact subscriptions to the generated queries that have an anchor (beater.presearch), and
    none to the rest (a query without one makes every document a candidate): documents that
    meet no anchor are left out, and each query still gets what the engine's search finds."""
    documents, generated = corpus(SEED + 3, DOCUMENTS), queries(0 if mapped else 1)
    if mapped:
        await index_corpus(stack, index, documents, MAPPING)
    port = stack.ports.beater + 17
    url = stack.start_beater(
        "beater-presearch", port=port, ESTROM_PRESEARCH="true", ESTROM_ACTIVE_GRACE_SECONDS=PRESEARCH_WINDOW
    )
    session = await wamp_session(stack.router_url, {"ticket": {"authid": "watcher", "ticket": stack.watcher}})
    try:
        exact = Exact(stack, index, session, url)
        await exact.register(generated)
        anchored = await _anchored(stack, index, list(exact.ids), documents)
        assert len(anchored) > 10, "too few generated queries have an anchor to tell"
        exact.ids = defaultdict(list, {sid: exact.ids[sid] for sid in anchored})
        delivered: dict[str, set[int]] = defaultdict(set)
        for sid in anchored:
            await session.subscribe(
                lambda *hits, sid=sid: delivered[sid].update(hit["_source"]["n"] for hit in hits),
                api.topic(sid),
            )

        async def left_out() -> bool:  # a document no anchor is met by: not percolated any more
            before = await scrape(url)
            status, _ = await post(f"{url}/api/v0.1/docs/{index}", {"level": "zzzz"})
            assert status == 200
            return grew(before, await scrape(url), "estrom_documents_not_percolated_total") == 1

        await eventually(left_out, what="the presearcher to leave a document out")
        before = await scrape(url)
        await exact.send(documents)
        left = grew(before, await scrape(url), "estrom_documents_not_percolated_total")
        assert 0 < left <= len(documents) - sum(map(Anchors(anchored.values()).met, documents)), left
        await settled(session, exact)
    finally:
        session.leave()
        stack.stop("beater-presearch")
    if mapped:
        await exact.check(delivered, index)
        return
    copy = index + "-copy"
    made = (await engine(stack, "GET", f"/estrom-queries-{index}"))[f"estrom-queries-{index}"]
    default_fields = made["settings"]["index"]["query"]["default_field"]
    settings = {"number_of_replicas": 0, "index.query.default_field": default_fields}
    await engine(stack, "PUT", f"/{copy}", {"settings": settings, "mappings": made["mappings"]})
    await index_corpus(stack, copy, documents, None)
    await exact.check(delivered, copy)


async def _anchored(stack, index: str, ids: list[str], documents: list[dict]) -> dict[str, Any]:
    """The IDs whose stored queries have an anchor on the percolator index's mapping, and their
    anchors: as many as leave a quarter of ``documents`` out, or more."""
    name = f"estrom-queries-{index}"
    made = (await engine(stack, "GET", f"/{name}"))[name]
    fields = read_mapping(made["mappings"], made["settings"])
    found = await engine(stack, "POST", f"/{name}/_mget", {"ids": sorted(ids)})
    chosen: dict[str, Any] = {}
    for hit in found["docs"]:
        taken = anchor(hit["_source"]["estrom_query"], fields)
        if taken is None:
            continue
        candidates = Anchors([*chosen.values(), taken])
        if len(documents) - sum(map(candidates.met, documents)) >= len(documents) // 4:
            chosen[hit["_id"]] = taken
    return chosen
