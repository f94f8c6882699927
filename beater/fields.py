"""The fields a stored query names, for its percolator index's mapping and default fields.

A query stored in a percolator index is parsed against that index's mapping: a field it names
must be mapped there (beater.mapping maps the missing ones as ``searched_fields`` says), and a
query that searches the default fields must name them (``with_default_fields``), or the engine's
percolator reads it differently from the engine's search of the source index.
"""

from __future__ import annotations

from typing import Any

from beater import lucene
from beater.validation import BOOL_CLAUSES

# --- Default fields ---------------------------------------------------------------------------

# Queries that search the index's default fields when they name none, and where they nest others.
_DEFAULT_FIELD_QUERIES = frozenset({"query_string", "simple_query_string", "multi_match"})
_NESTED = {
    "bool": BOOL_CLAUSES,
    "dis_max": ("queries",),
    "constant_score": ("filter",),
    "boosting": ("positive", "negative"),
    "nested": ("query",),
}


def with_default_fields(clause: dict, fields: list[str]) -> dict:
    """``clause`` with ``fields`` written into each query that would search the default fields.

    The same query as the engine's search runs on the source index, whose default fields these
    are; spelled out because OpenSearch's percolator matches nothing for a query string stored
    without fields once the percolator index's mapping has changed (seen on 2.19).
    """
    ((kind, body),) = clause.items()
    if kind in _DEFAULT_FIELD_QUERIES:
        if "fields" in body or "default_field" in body:
            return clause
        return {kind: {**body, "fields": list(fields)}}
    nested = _NESTED.get(kind, ())
    if not nested:
        return clause
    out = dict(body)
    for key in nested:
        value = body.get(key)
        if isinstance(value, list):
            out[key] = [with_default_fields(item, fields) for item in value]
        elif isinstance(value, dict):
            out[key] = with_default_fields(value, fields)
    return {kind: out}


# --- Fields a query names -------------------------------------------------------------------

# Query types whose body is keyed by the field they search.
_SINGLE_FIELD = frozenset(
    {
        "term",
        "terms",
        "prefix",
        "wildcard",
        "regexp",
        "fuzzy",
        "range",
        "match",
        "match_phrase",
        "match_phrase_prefix",
        "match_bool_prefix",
    }
)


def searched_fields(clause: dict) -> dict[str, str]:
    """``{field: "number" | "string"}`` for each field a canonical clause names.

    A field is a number when every use compares it with numbers (a range with numeric bounds).
    Fields a query string names count too; wildcard field names do not.
    """
    uses: dict[str, set[str]] = {}
    _collect_fields(clause, uses)
    return {field: "number" if kinds == {"number"} else "string" for field, kinds in uses.items()}


def _collect_fields(clause: Any, uses: dict[str, set[str]]) -> None:
    if isinstance(clause, list):
        for item in clause:
            _collect_fields(item, uses)
        return
    if not isinstance(clause, dict):
        return
    for kind, body in clause.items():
        if isinstance(body, list):
            _collect_fields(body, uses)
        elif not isinstance(body, dict):
            continue
        elif kind == "exists" and isinstance(body.get("field"), str):
            _use(uses, body["field"], "string")
        elif kind in _SINGLE_FIELD:
            for field, value in body.items():
                if field != "boost":
                    numeric = kind == "range" and _numeric_bounds(
                        [value.get(key) for key in ("gt", "gte", "lt", "lte", "from", "to")]
                    )
                    _use(uses, field, "number" if numeric else "string")
        elif kind == "query_string" and isinstance(body.get("query"), str):
            _collect_lucene_fields(body["query"], body.get("default_operator", "OR"), uses)
        else:
            _collect_fields(body, uses)


def _collect_lucene_fields(text: str, operator: Any, uses: dict[str, set[str]]) -> None:
    try:
        tree = lucene.parse(text, operator if isinstance(operator, str) else "OR")
    except lucene.LuceneSyntaxError:
        return  # an escaped string (`escape`), which names no field
    for leaf in lucene.leaves(tree):
        if leaf.field == "_exists_":
            _use(uses, leaf.text, "string")
        elif leaf.field is not None:
            if leaf.kind == "RANGE":
                bounds = [bound for bound in leaf.bounds if bound != "*"]
            elif leaf.kind == "TERM" and leaf.text[:1] in "<>":
                bounds = [leaf.text.lstrip("<>=")]  # `bytes:>=100`, the engines' short range
            else:
                bounds = None
            _use(uses, leaf.field, "number" if bounds is not None and _numeric_bounds(bounds) else "string")


def _use(uses: dict[str, set[str]], field: str, kind: str) -> None:
    if field and not field.startswith("_") and not set(field) & set("*?\\"):
        uses.setdefault(field, set()).add(kind)


def _numeric_bounds(bounds: list[Any]) -> bool:
    bounds = [bound for bound in bounds if bound is not None]
    return bool(bounds) and all(_is_number(bound) for bound in bounds)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
