"""Query identity: one canonical form, and one ID, per meaning.

A query arrives as a Lucene query string or as an Elasticsearch query DSL object. Both are
turned into a canonical DSL clause (a Lucene string becomes ``{"query_string": {"query": ...}}``
with the string itself canonicalised), and the ID is the xxh3_64 of the index and that clause.
The rules, and why each one keeps the meaning, are listed in the README ("Query identity").

Every query is checked by beater.validation before it is canonicalised: nothing here sees a
query that is too big, too deep, or not of the allowed shape.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import xxhash
from luqum.parser import parser as _lucene
from luqum.tree import (
    AndOperation,
    BaseOperation,
    Boost,
    FieldGroup,
    From,
    Group,
    Item,
    Not,
    OrOperation,
    Plus,
    Prohibit,
    Range,
    Regex,
    SearchField,
    To,
    UnknownOperation,
    Word,
)

from beater.validation import (
    DEFAULT_LIMITS,
    InvalidQuery,
    Limits,
    check_clause,
    check_lucene_size,
    check_pattern,
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

_BOOL_CLAUSES = ("must", "filter", "should", "must_not")

# Lucene's other spellings of the operators, which luqum reads as plain words.
_OPERATOR_WORDS = frozenset({"&&", "||"})


@dataclass(frozen=True)
class Identified:
    """A query in canonical form, with its ID."""

    id: str
    index: str
    query: Query  # canonical, in the user's form: a string stays a string
    clause: dict  # the DSL clause stored in the engine


def identify(index: str, query: Any, limits: Limits = DEFAULT_LIMITS) -> Identified:
    """Check ``query`` against ``limits`` and the allowed query types, canonicalise it for
    ``index`` and compute its ID; raise InvalidQuery, naming what is wrong, if refused."""
    if isinstance(query, str):
        canonical: Query = canonical_lucene(query, limits)
        clause = {"query_string": {"query": canonical}}
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


def query_id(index: str, clause: dict) -> str:
    """The ID of a canonical clause on an index: 16 lowercase hex digits of xxh3_64."""
    return xxhash.xxh3_64_hexdigest(_canonical_json([index, clause]).encode("utf-8"))


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- Lucene query strings -------------------------------------------------------------------


# Parsed trees of the latest canonical strings: mapping the fields of a query being registered
# needs its tree again. Few: a tree takes many times the memory of its string.
_TREES: OrderedDict[str, Item] = OrderedDict()
_TREES_KEPT = 32


def canonical_lucene(text: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """The canonical spelling of a Lucene query string."""
    if not text.strip():
        raise InvalidQuery("the query is empty")
    check_lucene_size(text, limits)
    try:
        tree = _lucene.parse(text)
    except Exception as e:  # noqa: BLE001 - whatever luqum raises, the string is not a query
        raise InvalidQuery(f"cannot parse the query string: {e}") from None
    _check_patterns(tree, limits)
    tree = _normalise(tree)
    canonical = _render(tree)
    _TREES[canonical] = tree
    _TREES.move_to_end(canonical)
    while len(_TREES) > _TREES_KEPT:
        _TREES.popitem(last=False)
    return canonical


def _parsed(canonical: str) -> Item:
    tree = _TREES.get(canonical)
    return tree if tree is not None else _lucene.parse(canonical)


def _check_patterns(node: Item, limits: Limits) -> None:
    """Regular expressions and wildcard terms are bounded as in DSL queries."""
    if isinstance(node, Regex) or (isinstance(node, Word) and set(node.value) & set("*?")):
        check_pattern(node.value, limits, "query string")
    for child in node.children:
        _check_patterns(child, limits)


def _normalise(node: Item) -> Item:
    if isinstance(node, Group):
        return _normalise(node.expr)
    if isinstance(node, FieldGroup):
        inner = _normalise(node.expr)
        return FieldGroup(inner) if isinstance(inner, BaseOperation) else inner
    if isinstance(node, AndOperation | OrOperation):
        # AND and OR are associative, commutative and idempotent: flatten, sort, deduplicate.
        kind = type(node)
        operands: dict[str, Item] = {}
        for child in node.children:
            child = _normalise(child)
            for part in child.children if isinstance(child, kind) else (child,):
                operands.setdefault(_render(part), part)
        if len(operands) == 1:
            return next(iter(operands.values()))
        return kind(*(operands[key] for key in sorted(operands)))
    if isinstance(node, UnknownOperation):
        # Clauses joined by the default operator are one boolean query: their order does not
        # matter, unless `&&` or `||` stand among them (luqum takes those for words).
        children = [_normalise(child) for child in node.children]
        if not any(isinstance(c, Word) and c.value in _OPERATOR_WORDS for c in children):
            children.sort(key=_render)
        return UnknownOperation(*children)
    node = copy.copy(node)
    node.children = [_normalise(child) for child in node.children]
    return node


def _render(node: Item) -> str:
    if isinstance(node, AndOperation):
        return " AND ".join(_operand(child) for child in node.children)
    if isinstance(node, OrOperation):
        return " OR ".join(_operand(child) for child in node.children)
    if isinstance(node, UnknownOperation):
        return " ".join(_operand(child) for child in node.children)
    if isinstance(node, FieldGroup):
        return f"({_render(node.expr)})"
    if isinstance(node, SearchField):
        return f"{node.name}:{_operand(node.expr)}"
    if isinstance(node, Not):
        return f"NOT {_operand(node.a)}"
    if isinstance(node, Plus):
        return f"+{_operand(node.a)}"
    if isinstance(node, Prohibit):
        return f"-{_operand(node.a)}"
    if isinstance(node, Boost):
        return f"{_operand(node.expr)}^{node.force}"
    if isinstance(node, Range):
        low, high = ("[" if node.include_low else "{"), ("]" if node.include_high else "}")
        return f"{low}{_render(node.low)} TO {_render(node.high)}{high}"
    return _bare(node)


def _bare(node: Item) -> str:
    """``node`` as written, without the whitespace around it and its parts."""
    bare = copy.deepcopy(node)
    _strip_whitespace(bare)
    return str(bare)


def _operand(node: Item) -> str:
    text = _render(node)
    return f"({text})" if isinstance(node, BaseOperation) else text


def _strip_whitespace(node: Item) -> None:
    node.head = node.tail = ""
    for child in node.children:
        _strip_whitespace(child)


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
        if key in _BOOL_CLAUSES:
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
    return {**body, "query": canonical_lucene(body["query"], limits)}


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
            _collect_lucene_fields(_parsed(body["query"]), uses)
        else:
            _collect_fields(body, uses)


def _collect_lucene_fields(node: Item, uses: dict[str, set[str]]) -> None:
    if isinstance(node, SearchField):
        if node.name == "_exists_" and isinstance(node.expr, Word):
            _use(uses, node.expr.value, "string")
        elif isinstance(node.expr, Range | From | To):
            bounds = [_bare(child) for child in node.expr.children]
            _use(uses, node.name, "number" if _numeric_bounds([b for b in bounds if b != "*"]) else "string")
        else:
            _use(uses, node.name, "string")
    for child in node.children:
        _collect_lucene_fields(child, uses)


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
