"""Query identity: one canonical form, and one ID, per meaning.

A query arrives as a Lucene query string or as an Elasticsearch query DSL object. Both are
turned into a canonical DSL clause (a Lucene string becomes ``{"query_string": {"query": ...}}``),
and the ID is the xxh3_64 of the index and that clause, in which each query string stands for the
structure the engine reads from it (beater.lucene). A query string itself is stored as written:
the engine reads it as it reads the user's, and any other string with the same ID means the same.
The rules, and why each one keeps the meaning, are listed in docs/query-identity.md.

Every query is checked by beater.validation before it is canonicalised (a query string as it
is read): nothing here sees a query that is too big, too deep, or not of the allowed shape. The
fields a query names, for the engine's mapping, are beater.fields's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import xxhash

from beater import lucene
from beater.validation import (
    BOOL_CLAUSES,
    DEFAULT_LIMITS,
    InvalidQuery,
    Limits,
    check_clause,
    check_query_string,
)

Query = str | dict

# Leaf queries whose short form `{"field": value}` means `{"field": {KEY: value}}`.
_SHORT_FORM_KEY = {
    "match": "query",
    "match_phrase": "query",
    "match_phrase_prefix": "query",
    "match_bool_prefix": "query",
    "term": "value",
    "prefix": "value",
    "wildcard": "value",
    "regexp": "value",
    "fuzzy": "value",
}


@dataclass(frozen=True)
class Identified:
    """A query in canonical form, with its ID."""

    id: str
    index: str
    query: Query  # canonical, in the user's form: a string stays a string
    clause: dict  # the DSL clause stored in the engine
    highlight: bool = False  # its hits carry the engine's highlights: another ID


def highlighted(identified: Identified) -> Identified:
    """The same query registered for highlights: its own ID, so that only its readers pay."""
    return replace(identified, id=query_id(identified.index, identified.clause, True), highlight=True)


def identify(index: str, query: Any, limits: Limits = DEFAULT_LIMITS) -> Identified:
    """Check ``query`` against ``limits`` and the allowed query types, canonicalise it for
    ``index`` and compute its ID; raise InvalidQuery, naming what is wrong, if refused."""
    if isinstance(query, str):
        canonical: Query = query
        clause = {"query_string": {"query": _query_text(query, limits)}}
    elif isinstance(query, dict):
        if "query" in query:
            if set(query) != {"query"}:
                raise InvalidQuery("a full query object may only have the key 'query'")
            query = query["query"]
        check_clause(query, limits)
        clause = canonical_clause(query, limits)
        canonical = clause
    else:
        raise InvalidQuery("a query is a Lucene query string or a query DSL object")
    return Identified(id=query_id(index, clause), index=index, query=canonical, clause=clause)


def query_id(index: str, clause: dict, highlight: bool = False) -> str:
    """The ID of a canonical clause on an index (registered for highlights, or not): 16
    lowercase hex digits of xxh3_64."""
    identity = [index, _identity_form(clause), *(["highlight"] if highlight else [])]
    return xxhash.xxh3_64_hexdigest(_canonical_json(identity).encode("utf-8"))


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- Lucene query strings -------------------------------------------------------------------


class _QueryText(str):
    """A Lucene query string as its user wrote it, carrying the key of the structure the engine
    reads from it: the string is what is stored, the key what the ID is made of."""

    key: str


def lucene_key(text: str, limits: Limits = DEFAULT_LIMITS, options: dict | None = None) -> str:
    """The key of what the engine reads from a query string, checked against ``limits``.

    ``options`` are those of a ``query_string`` clause: its default operator changes the
    structure, and with ``minimum_should_match`` the optional clauses count, so they are not
    normalised. With ``escape`` the string is not a query at all, and is its own key.
    """
    options = options or {}
    tree = check_query_string(text, limits, options)
    if tree is None:
        return json.dumps(["escaped", text], ensure_ascii=False)
    return lucene.key(lucene.normalise(tree, should_counts="minimum_should_match" in options))


def _query_text(text: str, limits: Limits, options: dict | None = None) -> _QueryText:
    query = _QueryText(text)
    query.key = lucene_key(text, limits, options)
    return query


def _identity_form(value: Any) -> Any:
    """A canonical clause with each query string replaced by the key of its structure."""
    if isinstance(value, _QueryText):
        return {"lucene": value.key}
    if isinstance(value, dict):
        return {key: _identity_form(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_identity_form(item) for item in value]
    return value


# --- Query DSL ------------------------------------------------------------------------------


def canonical_clause(clause: dict, limits: Limits = DEFAULT_LIMITS) -> dict:
    """The canonical form of one DSL clause that beater.validation has checked."""
    ((kind, body),) = clause.items()
    return {kind: _NORMALISERS.get(kind, _leaf)(kind, body, limits)}


def _clause_list(value: Any, limits: Limits) -> list[dict]:
    clauses = value if isinstance(value, list) else [value]
    return [canonical_clause(clause, limits) for clause in clauses]


def _sorted_clauses(clauses: list[dict], deduplicate: bool) -> list[dict]:
    keyed = [(_canonical_json(clause), clause) for clause in clauses]
    if deduplicate:
        keyed = list(dict(keyed).items())
    return [clause for _, clause in sorted(keyed, key=lambda pair: pair[0])]


def _bool(kind: str, body: dict, limits: Limits) -> dict:
    out = {}
    for key, value in body.items():
        if key in BOOL_CLAUSES:
            # `should` keeps duplicates: they count towards minimum_should_match.
            clauses = _sorted_clauses(_clause_list(value, limits), deduplicate=key != "should")
            if clauses:
                out[key] = clauses
        else:
            out[key] = value
    return out


def _dis_max(kind: str, body: dict, limits: Limits) -> dict:
    out = dict(body)
    out["queries"] = _sorted_clauses(_clause_list(body["queries"], limits), deduplicate=True)
    return out


def _nested_clauses(*keys: str):
    def normalise(kind: str, body: dict, limits: Limits) -> dict:
        out = dict(body)
        for key in keys:
            if key in body:
                out[key] = canonical_clause(body[key], limits)
        return out

    return normalise


def _terms(kind: str, body: dict, limits: Limits) -> dict:
    # Validated: each list is the values of the one field; `boost` and `_name` are the others.
    return {
        key: sorted(value, key=_canonical_json) if isinstance(value, list) else value
        for key, value in body.items()
    }


def _query_string(kind: str, body: dict, limits: Limits) -> dict:
    return {**body, "query": _query_text(body["query"], limits, body)}


def _leaf(kind: str, body: dict, limits: Limits) -> dict:
    key = _SHORT_FORM_KEY.get(kind)
    if key is None:
        return body
    # The engine reads every key of these queries as the field (a field may be named `boost`).
    return {field: value if isinstance(value, dict) else {key: value} for field, value in body.items()}


_NORMALISERS = {
    "bool": _bool,
    "dis_max": _dis_max,
    "constant_score": _nested_clauses("filter"),
    "boosting": _nested_clauses("positive", "negative"),
    "nested": _nested_clauses("query"),
    "terms": _terms,
    "query_string": _query_string,
}
