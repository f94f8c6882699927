"""What a stored query may be: a schema for every allowed query type, and limits on its size.

A percolator query runs inside the engine, with the engine's rights, on every document of its
index. So the whole tree is checked before anything else looks at it: every object's keys must be
known for its query type, each value has a type, nested queries are checked the same way, and
anything else is refused with the path to it (``query.bool.must[1]: ...``). The engine accepts
more (other spellings such as ``mustNot``, top-level ``boost`` keys, terms lookups, inner hits);
estrom accepts a strict subset, so nothing can hide where this check does not look.

Size is checked first, without recursion, so that no parser (beater.lucene's, the JSON
encoder, the engine's) ever sees a query deeper, longer or wider than the limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beater import lucene


class InvalidQuery(ValueError):
    """The query cannot be parsed, or uses something that is not allowed."""


@dataclass(frozen=True)
class Limits:
    """How big a query may be (docs/security.md); each has a setting in beater/settings.py."""

    max_bytes: int = 16 * 1024  # a Lucene string, or the DSL object as compact JSON
    max_depth: int = 32  # nesting of JSON objects and arrays, or of Lucene groups
    max_clauses: int = 1024  # query clauses, Lucene terms and terms/ids values (Lucene's own cap)
    max_pattern_length: int = 1000  # a regexp or wildcard pattern (the engine's max_regex_length)
    max_determinized_states: int = 10_000  # the engine's default for regexp automata


DEFAULT_LIMITS = Limits()


# --- size, before any parsing ---------------------------------------------------------------


def check_dsl_size(query: Any, limits: Limits) -> None:
    """Refuse a DSL value that is too deep, too big or has too many clauses; never recurses."""
    size = 0
    clauses = 0
    stack: list[tuple[Any, int, str]] = [(query, 1, "query")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, dict | list):
            if depth > limits.max_depth:
                raise InvalidQuery(f"{where}: nested deeper than {limits.max_depth} levels")
            size += 2
            if isinstance(value, dict):
                for key, item in value.items():
                    size += (
                        _text_bytes(key, f"{where}.{key}") + 4 if isinstance(key, str) else limits.max_bytes
                    )
                    stack.append((item, depth + 1, f"{where}.{key}"))
            else:
                clauses += len(value)
                for position, item in enumerate(value):
                    size += 1
                    stack.append((item, depth + 1, f"{where}[{position}]"))
        elif isinstance(value, str):
            size += _text_bytes(value, where) + 2
        else:
            size += 8
        if size > limits.max_bytes:
            raise InvalidQuery(f"the query is larger than {limits.max_bytes} bytes")
        if clauses > limits.max_clauses:
            raise InvalidQuery(f"the query has more than {limits.max_clauses} clauses")


def _text_bytes(text: str, where: str) -> int:
    """The UTF-8 length of ``text``; a lone UTF-16 surrogate (which JSON can carry) is not text."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidQuery(f"{where}: a string holds a lone UTF-16 surrogate, which is not text") from None


_LUCENE_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\\.|[^\s()"]+')


def check_lucene_size(text: str, limits: Limits, where: str = "query") -> None:
    """Refuse a Lucene query string that is too long, too deep or has too many terms.

    The parser and the walks over the structure it builds recurse per group: both are bounded
    here, before the parse.
    """
    if _text_bytes(text, where) > limits.max_bytes:
        raise InvalidQuery(f"{where}: the query string is longer than {limits.max_bytes} bytes")
    depth = deepest = 0
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif not quoted and char in ")]}":
            depth -= 1
    if deepest > limits.max_depth:
        raise InvalidQuery(f"{where}: groups nested deeper than {limits.max_depth} levels")
    if len(_LUCENE_TOKEN.findall(text)) > limits.max_clauses:
        raise InvalidQuery(f"{where}: the query string has more than {limits.max_clauses} terms")


def check_pattern(pattern: str, limits: Limits, where: str) -> None:
    if len(pattern) > limits.max_pattern_length:
        raise InvalidQuery(f"{where}: the pattern is longer than {limits.max_pattern_length} characters")


def check_query_string(text: str, limits: Limits, options: dict | None = None) -> lucene.Node | None:
    """Check a Lucene query string (``options``: those of its ``query_string`` clause) and return
    the structure the engine reads from it; None with ``escape``, where it is no query."""
    options = options or {}
    if not text.strip():
        raise InvalidQuery("the query is empty")
    check_lucene_size(text, limits)
    if options.get("escape") is True:
        return None
    operator = options.get("default_operator", "OR")
    try:
        # Operators, fields and parentheses are tokens too: twice the terms allowed.
        tree = lucene.parse(text, operator if isinstance(operator, str) else "OR", 2 * limits.max_clauses)
    except lucene.LuceneSyntaxError as e:
        raise InvalidQuery(f"cannot parse the query string: {e}") from None
    for leaf in lucene.leaves(tree):
        if leaf.kind in ("REGEXPTERM", "WILDTERM", "PREFIXTERM"):
            check_pattern(leaf.text, limits, "query string")
        if leaf.field == "*":
            raise InvalidQuery(_ALL_FIELDS_REFUSED.format("the field '*:'"))
    if options.get("default_field") == "*":
        raise InvalidQuery(_ALL_FIELDS_REFUSED.format('"default_field": "*"'))
    return tree


# A stored query string searching the field "*" makes OpenSearch 2.19 fail every later
# percolation of its index once the index's mapping changes ("No field mapping can be found for
# the field with name [*]"); "fields": ["*"] means the same and does not.
_ALL_FIELDS_REFUSED = (
    "query string: {} is not allowed (in a stored query it breaks OpenSearch's percolator); "
    'leave the field out to search the default fields, or use "fields": ["*"]'
)


# --- the schema -----------------------------------------------------------------------------

# A value check: (value, where, limits) -> None, or raise InvalidQuery.
Check = Callable[[Any, str, Limits], None]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _typed(name: str, accept: Callable[[Any], bool]) -> Check:
    def check(value: Any, where: str, limits: Limits) -> None:
        if not accept(value):
            raise InvalidQuery(f"{where}: must be {name}, not {_kind(value)}")

    return check


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_string = _typed("a string", lambda v: isinstance(v, str))
_number = _typed("a number", _is_number)
_integer = _typed("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
_boolean = _typed("a boolean", lambda v: isinstance(v, bool))
_scalar = _typed("a string, number or boolean", lambda v: isinstance(v, str | bool) or _is_number(v))
_bound = _typed("a string, number or null", lambda v: v is None or isinstance(v, str) or _is_number(v))
_string_or_integer = _typed(
    "a string or an integer", lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
)
_number_or_string = _typed("a number or a string", lambda v: isinstance(v, str) or _is_number(v))


def _list_of(check: Check, name: str) -> Check:
    def checked(value: Any, where: str, limits: Limits) -> None:
        if not isinstance(value, list):
            raise InvalidQuery(f"{where}: must be an array of {name}, not {_kind(value)}")
        for position, item in enumerate(value):
            check(item, f"{where}[{position}]", limits)

    return checked


_strings = _list_of(_string, "strings")


def _string_or_strings(value: Any, where: str, limits: Limits) -> None:
    (_string if isinstance(value, str) else _strings)(value, where, limits)


def _max_states(value: Any, where: str, limits: Limits) -> None:
    _integer(value, where, limits)
    if not 0 < value <= limits.max_determinized_states:
        raise InvalidQuery(f"{where}: must be between 1 and {limits.max_determinized_states}")


def _pattern(value: Any, where: str, limits: Limits) -> None:
    _string(value, where, limits)
    check_pattern(value, limits, where)


def _lucene(value: Any, where: str, limits: Limits) -> None:
    _string(value, where, limits)
    check_lucene_size(value, limits, where)


def _point(value: Any, where: str, limits: Limits) -> None:
    """A geo point: ``{"lat", "lon"}``, ``[lon, lat]``, or a string (``"lat,lon"``, geohash, WKT)."""
    if isinstance(value, str):
        return
    if isinstance(value, list):
        if not 2 <= len(value) <= 3 or not all(_is_number(item) for item in value):
            raise InvalidQuery(f"{where}: a point as an array is [lon, lat]")
        return
    _shape({"lat": _number, "lon": _number}, required=("lat", "lon"))(value, where, limits)


def _clause(value: Any, where: str, limits: Limits) -> None:
    """One query clause: an object with exactly one key, an allowed query type."""
    if not isinstance(value, dict) or len(value) != 1:
        raise InvalidQuery(f"{where}: a query clause is an object with exactly one key, the query type")
    ((kind, body),) = value.items()
    schema = QUERY_TYPES.get(kind)
    if schema is None:
        raise InvalidQuery(f"{where}: query type '{kind}' is not allowed")
    if not isinstance(body, dict):
        raise InvalidQuery(f"{where}.{kind}: the body of '{kind}' must be an object")
    schema(body, f"{where}.{kind}", limits)


def _clauses(value: Any, where: str, limits: Limits) -> None:
    """One clause, or an array of them (as in ``bool.must``)."""
    if isinstance(value, list):
        for position, item in enumerate(value):
            _clause(item, f"{where}[{position}]", limits)
    else:
        _clause(value, where, limits)


_COMMON: dict[str, Check] = {"boost": _number, "_name": _string}

# Other spellings the engine still reads; named in the error, so the fix is obvious.
_SPELLINGS = {"mustNot": "must_not", "minimumShouldMatch": "minimum_should_match"}


def _object(
    body: Any, where: str, limits: Limits, keys: dict[str, Check], required: tuple[str, ...] = ()
) -> None:
    if not isinstance(body, dict):
        raise InvalidQuery(f"{where}: must be an object, not {_kind(body)}")
    for key, value in body.items():
        check = keys.get(key)
        if check is None:
            hint = f" (write '{_SPELLINGS[key]}')" if key in _SPELLINGS else ""
            raise InvalidQuery(f"{where}: unknown key '{key}'{hint}; allowed: {', '.join(sorted(keys))}")
        check(value, f"{where}.{key}", limits)
    for key in required:
        if key not in body:
            raise InvalidQuery(f"{where}: '{key}' is missing")


def _shape(keys: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    """An object with fixed keys."""

    def check(body: Any, where: str, limits: Limits) -> None:
        _object(body, where, limits, keys, required)

    return check


def _keys(keys: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    """A query whose body has fixed keys, and ``boost`` and ``_name``."""
    return _shape({**_COMMON, **keys}, required)


def _one_of(body: dict, where: str, names: tuple[str, ...]) -> None:
    if sum(name in body for name in names) != 1:
        raise InvalidQuery(f"{where}: give exactly one of {', '.join(repr(name) for name in names)}")


def _field_query(short: Check, params: dict[str, Check], value_keys: tuple[str, ...] = ("query",)) -> Check:
    """A query on one field: ``{field: short value}`` or ``{field: {params}}``."""
    allowed = {**_COMMON, **params}

    def check(body: dict, where: str, limits: Limits) -> None:
        if len(body) != 1:
            raise InvalidQuery(f"{where}: names exactly one field, not {len(body)}")
        ((field, value),) = body.items()
        here = f"{where}.{field}"
        if isinstance(value, dict):
            _object(value, here, limits, allowed)
            _one_of(value, here, value_keys)
        else:
            short(value, here, limits)

    return check


def _fielded(params: dict[str, Check], field: Check, required: tuple[str, ...] = ()) -> Check:
    """A range or geo query: fixed keys, plus exactly one field whose value ``field`` checks."""
    allowed = {**_COMMON, **params} if params else {}

    def check(body: dict, where: str, limits: Limits) -> None:
        fields = [key for key in body if key not in allowed]
        if len(fields) != 1:
            raise InvalidQuery(f"{where}: names exactly one field, not {len(fields)}")
        for key, value in body.items():
            (allowed.get(key) or field)(value, f"{where}.{key}", limits)
        for key in required:
            if key not in body:
                raise InvalidQuery(f"{where}: '{key}' is missing")

    return check


def _terms(body: dict, where: str, limits: Limits) -> None:
    """``{field: [values]}`` with ``boost``/``_name``; an object under a field is a lookup."""
    fields = 0
    for key, value in body.items():
        here = f"{where}.{key}"
        if isinstance(value, list):
            fields += 1
            _list_of(_scalar, "strings, numbers or booleans")(value, here, limits)
        elif isinstance(value, dict):
            raise InvalidQuery(f"{here}: a terms lookup is not allowed; give a list of values")
        elif key in _COMMON:
            _COMMON[key](value, here, limits)
        else:
            raise InvalidQuery(f"{here}: 'terms' takes a list of values")
    if fields != 1:
        raise InvalidQuery(f"{where}: names exactly one field, not {fields}")


def _range_field(value: Any, where: str, limits: Limits) -> None:
    bounds = dict.fromkeys(("gt", "gte", "lt", "lte", "from", "to"), _bound)
    _object(
        value,
        where,
        limits,
        {
            **_COMMON,
            **bounds,
            "include_lower": _boolean,
            "include_upper": _boolean,
            "format": _string,
            "time_zone": _string,
            "relation": _string,
        },
    )


_MATCH = {
    "query": _scalar,
    "analyzer": _string,
    "operator": _string,
    "minimum_should_match": _string_or_integer,
    "fuzziness": _string_or_integer,
    "prefix_length": _integer,
    "max_expansions": _integer,
    "fuzzy_transpositions": _boolean,
    "fuzzy_rewrite": _string,
    "lenient": _boolean,
    "zero_terms_query": _string,
    "cutoff_frequency": _number,
    "auto_generate_synonyms_phrase_query": _boolean,
}
_PHRASE = {"query": _scalar, "analyzer": _string, "slop": _integer, "zero_terms_query": _string}
_STRING_QUERY = {
    "query": _lucene,
    "fields": _string_or_strings,
    "default_operator": _string,
    "analyzer": _string,
    "quote_field_suffix": _string,
    "lenient": _boolean,
    "analyze_wildcard": _boolean,
    "auto_generate_synonyms_phrase_query": _boolean,
    "fuzzy_prefix_length": _integer,
    "fuzzy_max_expansions": _integer,
    "fuzzy_transpositions": _boolean,
    "minimum_should_match": _string_or_integer,
}

# The keys of a bool query that hold clauses.
BOOL_CLAUSES = ("must", "filter", "should", "must_not")

# Query types that read only the document being percolated. Left out on purpose: `script`,
# `script_score`, `function_score` and `terms_set` run scripts; `terms` with a lookup,
# `geo_shape` with an indexed shape, `more_like_this`, `percolate`, `has_child`, `has_parent`
# and `parent_id` read other documents; `wrapper` hides a query from this check; `intervals`
# takes a script filter. Left out of the allowed ones: `nested.inner_hits` (script fields).
QUERY_TYPES: dict[str, Check] = {
    "bool": _keys(
        {
            **dict.fromkeys(BOOL_CLAUSES, _clauses),
            "minimum_should_match": _string_or_integer,
            "adjust_pure_negative": _boolean,
        }
    ),
    "boosting": _keys(
        {"positive": _clause, "negative": _clause, "negative_boost": _number},
        required=("positive", "negative", "negative_boost"),
    ),
    "constant_score": _keys({"filter": _clause}, required=("filter",)),
    "dis_max": _keys(
        {"queries": _list_of(_clause, "query clauses"), "tie_breaker": _number}, required=("queries",)
    ),
    "nested": _keys(
        {"path": _string, "query": _clause, "score_mode": _string, "ignore_unmapped": _boolean},
        required=("path", "query"),
    ),
    "match_all": _keys({}),
    "match_none": _keys({}),
    "match": _field_query(_scalar, _MATCH),
    "match_phrase": _field_query(_scalar, _PHRASE),
    "match_phrase_prefix": _field_query(_scalar, {**_PHRASE, "max_expansions": _integer}),
    "match_bool_prefix": _field_query(
        _scalar, {key: _MATCH[key] for key in _MATCH if key not in ("cutoff_frequency", "lenient")}
    ),
    "multi_match": _keys(
        {
            **_MATCH,
            "fields": _string_or_strings,
            "type": _string,
            "slop": _integer,
            "tie_breaker": _number,
        },
        required=("query",),
    ),
    "combined_fields": _keys(
        {
            "query": _scalar,
            "fields": _string_or_strings,
            "operator": _string,
            "minimum_should_match": _string_or_integer,
            "auto_generate_synonyms_phrase_query": _boolean,
            "zero_terms_query": _string,
        },
        required=("query", "fields"),
    ),
    "query_string": _keys(
        {
            **_STRING_QUERY,
            "default_field": _string,
            "quote_analyzer": _string,
            "allow_leading_wildcard": _boolean,
            "enable_position_increments": _boolean,
            "fuzziness": _string_or_integer,
            "fuzzy_rewrite": _string,
            "phrase_slop": _integer,
            "max_determinized_states": _max_states,
            "rewrite": _string,
            "time_zone": _string,
            "type": _string,
            "tie_breaker": _number,
            "escape": _boolean,
        },
        required=("query",),
    ),
    "simple_query_string": _keys({**_STRING_QUERY, "flags": _string_or_integer}, required=("query",)),
    "term": _field_query(_scalar, {"value": _scalar, "case_insensitive": _boolean}, ("value",)),
    "terms": _terms,
    "range": _fielded({}, _range_field),
    "exists": _keys({"field": _string}, required=("field",)),
    "prefix": _field_query(
        _pattern, {"value": _pattern, "rewrite": _string, "case_insensitive": _boolean}, ("value",)
    ),
    "wildcard": _field_query(
        _pattern,
        {"value": _pattern, "wildcard": _pattern, "rewrite": _string, "case_insensitive": _boolean},
        ("value", "wildcard"),
    ),
    "regexp": _field_query(
        _pattern,
        {
            "value": _pattern,
            "flags": _string,
            "flags_value": _integer,
            "max_determinized_states": _max_states,
            "case_insensitive": _boolean,
            "rewrite": _string,
        },
        ("value",),
    ),
    "fuzzy": _field_query(
        _scalar,
        {
            "value": _scalar,
            "fuzziness": _string_or_integer,
            "prefix_length": _integer,
            "max_expansions": _integer,
            "transpositions": _boolean,
            "rewrite": _string,
        },
        ("value",),
    ),
    "ids": _keys({"values": _strings}, required=("values",)),
    "geo_bounding_box": _fielded(
        {"validation_method": _string, "type": _string, "ignore_unmapped": _boolean},
        _shape(
            {
                "top_left": _point,
                "bottom_right": _point,
                "top_right": _point,
                "bottom_left": _point,
                "top": _number,
                "left": _number,
                "bottom": _number,
                "right": _number,
                "wkt": _string,
            }
        ),
    ),
    "geo_distance": _fielded(
        {
            "distance": _number_or_string,
            "distance_type": _string,
            "validation_method": _string,
            "ignore_unmapped": _boolean,
        },
        _point,
        required=("distance",),
    ),
    "geo_polygon": _fielded(
        {"validation_method": _string, "ignore_unmapped": _boolean},
        _shape({"points": _list_of(_point, "points")}, required=("points",)),
    ),
}


def check_clause(clause: Any, limits: Limits) -> None:
    """Check a whole DSL clause: its size first, then every object against its schema."""
    check_dsl_size(clause, limits)
    _clause(clause, "query", limits)
