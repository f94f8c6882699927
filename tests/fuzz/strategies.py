"""Generated input for the fuzz tests: queries (Lucene and DSL) and ingest bodies, hostile and not.

The vocabulary mixes what estrom allows with what it must refuse (other spellings, lookups,
scripts, inner hits), so generated values reach deep into the validator and the parsers.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

from beater.validation import QUERY_TYPES

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)

QUERY_KEYS = sorted(
    {
        "must",
        "must_not",
        "mustNot",
        "filter",
        "should",
        "minimum_should_match",
        "query",
        "value",
        "fields",
        "path",
        "boost",
        "_name",
        "inner_hits",
        "script",
        "index",
        "id",
        "gte",
        "lt",
        "max_determinized_states",
        "flags",
        "positive",
        "negative",
        "negative_boost",
        "queries",
        "points",
        "distance",
        "msg",
        "level",
        "estrom_query",
    }
)
QUERY_NAMES = sorted(QUERY_TYPES) + [
    "script",
    "wrapper",
    "terms_set",
    "percolate",
    "more_like_this",
    "has_child",
]

LUCENE_TOKENS = [
    "AND", "OR", "NOT", "&&", "||", "+", "-", "(", ")", "[", "]", "{", "}", "TO", "*", "?", "~", "~2",
    "^2", ":", '"', "\\", "/", "/a.*b/", "level:error", "msg:\"disk full\"", "status:[500 TO 599]",
    "_exists_:trace", "x:{1 TO *}", "a*", "fo?", "foo~", "a", "b", "c", "é", "\u0000", "\ud800",
]  # fmt: skip

lucene_strings = st.lists(st.sampled_from(LUCENE_TOKENS), max_size=30).map(" ".join) | st.text(max_size=200)


def _clause(children: st.SearchStrategy) -> st.SearchStrategy:
    body = st.dictionaries(st.sampled_from(QUERY_KEYS), children | scalars | lucene_strings, max_size=4)
    return st.builds(lambda kind, b: {kind: b}, st.sampled_from(QUERY_NAMES), body)


dsl_queries = st.recursive(
    st.builds(lambda kind: {kind: {}}, st.sampled_from(QUERY_NAMES)) | json_values,
    lambda children: _clause(children) | st.lists(children, max_size=3),
    max_leaves=20,
)

queries = lucene_strings | dsl_queries | st.builds(lambda q: {"query": q}, dsl_queries)

_documents = st.dictionaries(
    st.sampled_from(["msg", "level", "n", "estrom_query", "estrom_all.x", "a.b", "_id", ""])
    | st.text(max_size=8),
    json_values | st.just("\ud800") | st.just(float("inf")),
    max_size=6,
)


def _json(value) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


# Numbers as a sender's bytes spell them, not as json.dumps would: exponents past a double's
# range (1e999 parses as inf), long digit runs, and the literals JSON does not have.
_raw_numbers = st.one_of(
    st.builds(
        lambda sign, digits, fraction, exponent: f"{sign}{digits}{fraction}{exponent}",
        st.sampled_from(["", "-"]),
        st.from_regex(r"\A(0|[1-9][0-9]{0,30})\Z"),
        st.sampled_from(["", ".0", ".5", ".000001"]),
        st.one_of(st.just(""), st.integers(-400, 400).map(lambda e: f"e{e}"), st.just("E+309")),
    ),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "true", "null"]),
)
_raw_documents = st.lists(
    st.tuples(st.sampled_from(["a", "b", "n"]), _raw_numbers), min_size=1, max_size=4
).map(lambda fields: ("{" + ", ".join(f'"{name}": {value}' for name, value in fields) + "}").encode())

ingest_bodies = st.one_of(
    st.binary(max_size=200),
    _raw_documents,
    st.lists(_raw_documents, min_size=1, max_size=3).map(lambda docs: b"[" + b",".join(docs) + b"]"),
    json_values.map(_json),
    _documents.map(_json),
    st.lists(_documents, max_size=5).map(_json),
    st.lists(_documents, max_size=5).map(lambda docs: b"\n".join(_json(doc) for doc in docs)),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)
content_types = st.sampled_from(
    ["application/json", "application/x-ndjson", "text/plain", "application/json; charset=latin-1"]
)
