"""The queries the page's "filter for" and "filter out" make (router/web/facets.js, run in
Node), registered with the real engine: awkward field names and values are escaped so that the
refined query matches exactly the documents that hold (or do not hold) the value. On analysed
text the value is a phrase, as Kibana's filters are: `service:"web"` keeps `web gateway` too."""

from __future__ import annotations

import json
import pathlib

import pytest
import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from estrom.clients import HttpStream, docs_url, post

FACETS = pathlib.Path(__file__).resolve().parents[2] / "router" / "web" / "facets.js"
# (field, the value filtered on, another value), the documents' `kind` telling them apart.
CASES = [
    ("service", 'a "quoted" \\ value', "a quoted"),
    ("path", "/var/log (1) [x]", "/var/log"),
    ("tag", "-1", "2"),
    ("words", "AND OR NOT", "AND"),
    ("http.status", 500, 501),
    ("ok", True, False),
    ("odd name", "x", "y"),
]


async def refined(query, field: str, text: str, negate: bool):
    script = (
        f"const {{ refine }} = require({json.dumps(str(FACETS))});"
        f"process.stdout.write(JSON.stringify(refine({json.dumps(query)}, {json.dumps(field)},"
        f" {json.dumps(text)}, {json.dumps(negate)})));"
    )
    out, err, code = await getProcessOutputAndValue("node", ["-e", script])
    assert code == 0, err
    return json.loads(out)


def text_of(value) -> str:
    """The value as the page's facets show it (facets.valueText)."""
    return value if isinstance(value, str) else json.dumps(value)


@pytest.mark.parametrize("negate", [False, True], ids=["for", "out"])
@pytest.mark.parametrize("field, value, other", CASES, ids=[case[0] for case in CASES])
@pytest_twisted.ensureDeferred
async def test_a_refined_query_matches_exactly_what_it_says(stack, index, field, value, other, negate):
    for dsl in (False, True):
        base = {"match": {"kind": "t"}} if dsl else "kind:t"
        query = await refined(base, field, text_of(value), negate)
        params = {"i": index, "q": json.dumps(query) if dsl else query}
        stream = await HttpStream.open(stack.tailor_url, **params)
        try:
            await stream.wait_for_head()
            kept, left = (other, value) if negate else (value, other)
            documents = [
                {"kind": "t", field: left, "n": 0},  # first: had it matched, it would come first
                {"kind": "u", field: kept, "n": 1},  # not the base query
                {"kind": "t", field: kept, "n": 2},
            ]
            status, answer = await post(docs_url(stack.beater_url, index), documents)
            assert status == 200, answer
            hits = await stream.wait_for_hits(1)
            assert [hit["_source"]["n"] for hit in hits] == [2], (query, hits)
        finally:
            stream.close()


@pytest_twisted.ensureDeferred
async def test_on_analysed_text_the_value_is_a_phrase(stack, index):
    query = await refined("kind:t", "service", "web", False)
    stream = await HttpStream.open(stack.tailor_url, i=index, q=query)
    try:
        await stream.wait_for_head()
        documents = [
            {"kind": "t", "service": "webby", "n": 0},
            {"kind": "t", "service": "web gateway", "n": 1},
        ]
        status, answer = await post(docs_url(stack.beater_url, index), documents)
        assert status == 200, answer
        hits = await stream.wait_for_hits(1)
        assert [hit["_source"]["n"] for hit in hits] == [1]
    finally:
        stream.close()
