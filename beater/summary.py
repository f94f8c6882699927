"""WAMP ``estrom.summary(id, options)``: the engine's own aggregation of the stored documents that
match a query (a count, a histogram, top values, statistics), with the cursor it covers, so that
a reader can go on from there with the live hits (Tailor does, for ``/api/v0.1/aggs?since=``).

Two searches of the store, as a backlog reads it (after a refresh, this Beater's batches not yet
published left out): the first gives the count, the greatest cursor (the seam: ``cursor``), top
values (``terms`` and ``missing``) and ``stats``; the second, bounded by that cursor, the histogram
(one ``filters`` bucket per interval of cursors: a cursor's first 12 hex digits are when Beater
took the document) and each statistic's DDSketch bins (estrom.sketch). A reader then counts the
live hits with a cursor above ``cursor``, and those in ``pending`` (batches of this Beater in
flight at the seam, which arrive live).

A field's values are counted as the store maps it: a string by its ``.keyword`` (values longer
than its ``ignore_above``, 256 by default, are not indexed there: the engine counts them as
missing), a number as it is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from beater.cursor import parse_since
from beater.engine import EngineError, path
from beater.store import FIELD, Store
from estrom import api, sketch
from estrom.cursor import cursor_at, cursor_iso, cursor_ms

MAX_K = 10_000  # top values of a field
TERMS = 20_000  # top values asked of the engine in all, shared by the `by` fields
MAX_BUCKETS = 1_440  # of the histogram: the newest
SPLIT_VALUES = 10  # a histogram bucket's top values of `split`
INTERVALS = {"1s": 1.0, "10s": 10.0, "1m": 60.0}
NUMERIC = {
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
}
INTEGERS = {"long", "integer", "short", "byte", "unsigned_long"}  # whose range bounds are whole
OPTIONS = {"by", "k", "stats", "histogram", "split", "since", "bins", "fields"}
MAX_LISTED = 1_000  # fields the answer's `fields` lists at most


@dataclass(frozen=True)
class Asked:
    by: tuple[str, ...] = ()
    k: int = 10
    stats: tuple[str, ...] = ()
    interval: float = 60.0
    split: str | None = None
    since: str | None = None  # a cursor
    bins: bool = False  # give each statistic's sketch bins (to merge with a live sketch)
    fields: bool = False  # list the fields the store maps, and which can be counted


def summary_options(options: Any, now: float) -> Asked:
    """``estrom.summary``'s options; ValueError names the one that is wrong."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValueError(  # noqa: TRY004 - one error, an ApplicationError, for every bad option
            'the options are an object: {"by": [...], "stats": [...], "histogram": "1m", "since": "15m"}'
        )
    unknown = set(options) - OPTIONS
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    by, stats = _fields(options, "by"), _fields(options, "stats")
    split = options.get("split")
    if split is not None and (not isinstance(split, str) or not split or len(split) > 256):
        raise ValueError("'split' must be one field's name")
    k = options.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"'k' must be a whole number from 1 to {MAX_K}")
    interval = options.get("histogram", "1m")
    if interval not in INTERVALS:
        raise ValueError(f"'histogram' must be one of {', '.join(INTERVALS)}")
    since = options.get("since")
    if since is not None:
        if not isinstance(since, str):
            raise ValueError("'since' must be a string: a duration such as 15m, or an ISO 8601 time")
        since = cursor_at(parse_since(since, now))
    bins = options.get("bins", False)
    if not isinstance(bins, bool):
        raise ValueError("'bins' must be true or false")  # noqa: TRY004 - an ApplicationError
    fields = options.get("fields", False)
    if not isinstance(fields, bool):
        raise ValueError("'fields' must be true or false")  # noqa: TRY004 - an ApplicationError
    return Asked(by, k, stats, INTERVALS[interval], split, since, bins, fields)


def _fields(options: dict[str, Any], name: str) -> tuple[str, ...]:
    return api.field_names(options.get(name, []), name)


async def summarize(
    store: Store,
    index: str,
    clause: dict[str, Any],
    asked: Asked,
    pending: list[tuple[str, str]],
    removing: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The summary of the documents of ``index`` that match ``clause`` (and ``asked.since``),
    but those of ``pending`` (cursor ranges of this Beater's batches in flight: they arrive live)
    and ``removing`` (batches not published whose copies wait to be removed)."""
    await store.refresh(index)
    kinds = await _kinds(store, index, asked)
    listed = await _listed(store, index) if asked.fields else None
    terms = {name: kinds[name][0] for name in asked.by}
    bounds = {"gte": asked.since} if asked.since else {}
    must_not = [
        {"range": {FIELD: {"gte": first, "lte": last}}} for first, last in [*pending, *(removing or [])]
    ]
    size = min(MAX_K, TERMS // max(1, len(asked.by)))  # TERMS in all, however large k is
    aggregations: dict[str, Any] = {}
    for position, name in enumerate(asked.by):
        aggregations[f"top{position}"] = {"terms": {"field": terms[name], "size": size}}
        aggregations[f"missing{position}"] = {"missing": {"field": terms[name]}}
    for position, name in enumerate(asked.stats):
        aggregations[f"stats{position}"] = {"stats": {"field": name}}
    first = await _search(
        store,
        index,
        clause,
        bounds,
        must_not,
        {
            "size": 1,
            "sort": [{FIELD: "desc"}],
            "_source": False,
            "track_total_hits": True,
            "aggs": aggregations,
        },
    )
    since_iso = cursor_iso(asked.since) if asked.since else None
    if first is None or not first["hits"]["hits"]:
        return _empty(asked, since_iso, pending, listed)
    found = first.get("aggregations", {})  # none when only the histogram is asked for
    cursor = first["hits"]["hits"][0]["sort"][0]
    total = first["hits"]["total"]
    count = total["value"] if isinstance(total, dict) else total
    # The histogram's buckets: from `since` (or the newest MAX_BUCKETS) to the seam's.
    ms = round(asked.interval * 1000)
    last_bucket = cursor_ms(cursor) // ms
    first_bucket = last_bucket - MAX_BUCKETS + 1
    if asked.since:
        first_bucket = max(first_bucket, cursor_ms(asked.since) // ms)
    filters = {
        str(bucket): {
            "range": {
                FIELD: {"gte": cursor_at(bucket * ms / 1000), "lt": cursor_at((bucket + 1) * ms / 1000)}
            }
        }
        for bucket in range(first_bucket, last_bucket + 1)
    }
    histogram: dict[str, Any] = {"filters": {"filters": filters}}
    if asked.split:
        split_field = kinds[asked.split][0]
        histogram["aggs"] = {"split": {"terms": {"field": split_field, "size": SPLIT_VALUES}}}
    second_aggregations: dict[str, Any] = {"histogram": histogram}
    for position, name in enumerate(asked.stats):
        figures = found[f"stats{position}"]
        if figures["count"]:
            ranges = sketch.ranges(figures["min"], figures["max"])
            if kinds[name][1] in INTEGERS:
                ranges = _whole(ranges)
            second_aggregations[f"bins{position}"] = {
                "range": {"field": name, "ranges": ranges, "keyed": True}
            }
    second = await _search(
        store,
        index,
        clause,
        {**bounds, "lte": cursor},
        must_not,
        {"size": 0, "track_total_hits": False, "aggs": second_aggregations},
    )
    more = second.get("aggregations", {}) if second is not None else {}
    answer: dict[str, Any] = {
        "cursor": cursor,
        "since": since_iso,
        "count": count,
        "histogram": _histogram(asked, more.get("histogram"), first_bucket, last_bucket, ms),
        "pending": [list(batch) for batch in pending],
    }
    if asked.by:
        answer["top"] = {name: _top(found, position, asked.k) for position, name in enumerate(asked.by)}
    if asked.stats:
        answer["stats"] = {
            name: _stats(found[f"stats{position}"], more.get(f"bins{position}"), asked.bins)
            for position, name in enumerate(asked.stats)
        }
    if listed is not None:
        answer["fields"] = listed
    return answer


async def _listed(store: Store, index: str) -> list[dict[str, Any]]:
    """The fields the store maps for ``index`` (estrom's own left out), by name, at most
    MAX_LISTED: each with its type, whether `by` can count its values (a number, boolean, date,
    keyword, or text with a keyword sub-field) and whether `stats` takes it."""
    try:
        mapping = await store.engine.request("GET", path(index, "_mapping"))
    except EngineError as e:
        if e.type == "index_not_found_exception":
            return []
        raise
    leaves: dict[str, dict[str, Any]] = {}
    for entry in mapping.values():
        _leaves(entry.get("mappings", {}).get("properties", {}), "", leaves)
    listed = []
    for name in sorted(leaves)[:MAX_LISTED]:
        kind = leaves[name].get("type", "object")
        keyword = leaves[name].get("fields", {}).get("keyword", {}).get("type") == "keyword"
        countable = (
            kind in NUMERIC or kind in {"keyword", "boolean", "date", "ip"} or (kind == "text" and keyword)
        )
        listed.append({"name": name, "type": kind, "by": countable, "stats": kind in NUMERIC})
    return listed


def _leaves(properties: dict[str, Any], prefix: str, into: dict[str, dict[str, Any]]) -> None:
    for name, field in properties.items():
        if name.startswith("estrom_") or name == FIELD:
            continue
        if "properties" in field:
            _leaves(field["properties"], f"{prefix}{name}.", into)
        else:
            into[prefix + name] = field


async def _kinds(store: Store, index: str, asked: Asked) -> dict[str, tuple[str, str | None]]:
    """For each field asked about: the field to aggregate, and its type in the store (None if
    unmapped). ValueError says which field the store cannot count as asked."""
    names = set(asked.by) | set(asked.stats) | ({asked.split} if asked.split else set())
    if not names:
        return {}
    wanted = sorted(names | {f"{name}.keyword" for name in names})
    try:
        mapping = await store.engine.request("GET", path(index, "_mapping", "field", ",".join(wanted)))
    except EngineError as e:
        if e.type == "index_not_found_exception":
            return {name: (name, None) for name in names}
        raise
    fields: dict[str, dict[str, Any]] = {}
    for mappings in mapping.values():
        for full, entry in mappings.get("mappings", {}).items():
            leaf = next(iter(entry.get("mapping", {}).values()), {})
            fields[full] = leaf
    kinds: dict[str, tuple[str, str | None]] = {}
    for name in names:
        kind = fields.get(name, {}).get("type")
        if name in asked.stats and kind is not None and kind not in NUMERIC:
            raise ValueError(f"'{name}' is not a number in the store (it is mapped as {kind}): no statistics")
        if kind == "text":
            keyword = fields.get(f"{name}.keyword", {})
            if keyword.get("type") != "keyword":
                raise ValueError(
                    f"'{name}' is text without a keyword in the store: its values cannot be counted"
                )
            kinds[name] = (f"{name}.keyword", kind)
        else:
            kinds[name] = (name, kind)
    return kinds


async def _search(
    store: Store,
    index: str,
    clause: dict[str, Any],
    bounds: dict[str, str],
    must_not: list[dict],
    body: dict[str, Any],
) -> dict[str, Any] | None:
    cursor = {"range": {FIELD: bounds}} if bounds else {"exists": {"field": FIELD}}
    query: dict[str, Any] = {"bool": {"filter": [clause, cursor]}}
    if must_not:
        query["bool"]["must_not"] = must_not
    try:
        return await store.engine.request("POST", path(index, "_search"), {"query": query, **body})
    except EngineError as e:
        if e.type == "index_not_found_exception":
            return None
        raise


def _whole(ranges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ranges`` for a field of whole numbers (the engine takes only whole bounds there): the
    same numbers fall in each, and those that hold none are left out."""
    whole = []
    for entry in ranges:
        bounds = {key: math.ceil(entry[key]) for key in ("from", "to") if key in entry}
        if "from" in bounds and "to" in bounds and bounds["from"] >= bounds["to"]:
            continue
        whole.append({"key": entry["key"], **bounds})
    return whole


def _value(bucket: dict[str, Any]) -> str:
    """A terms bucket's value, as a live frame shows it (tailor.aggregate.text)."""
    if "key_as_string" in bucket:  # booleans, dates
        return bucket["key_as_string"]
    key = bucket["key"]
    return key if isinstance(key, str) else json.dumps(key)


def _top(found: dict[str, Any], position: int, k: int) -> dict[str, Any]:
    terms = found[f"top{position}"]
    buckets = terms["buckets"]
    values = [[_value(bucket), bucket["doc_count"]] for bucket in buckets]
    entry: dict[str, Any] = {
        "values": values[:k],
        "other": sum(count for _, count in values[k:]) + terms.get("sum_other_doc_count", 0),
        "missing": found[f"missing{position}"]["doc_count"],
    }
    if terms.get("sum_other_doc_count", 0):
        # Values not given have at most the least given count each.
        entry["approximate"] = True
        entry["error"] = values[-1][1] if values else 0
    return entry


def _stats(figures: dict[str, Any], bins: dict[str, Any] | None, with_bins: bool) -> dict[str, Any]:
    if not figures["count"]:
        empty: dict[str, Any] = {"count": 0, "min": None, "max": None, "avg": None, "sum": 0.0}
        return {**empty, **{label: None for label, _ in sketch.QUANTILES}}
    counts = {name: bucket["doc_count"] for name, bucket in (bins or {}).get("buckets", {}).items()}
    stats = {
        "count": figures["count"],
        "min": figures["min"],
        "max": figures["max"],
        "avg": figures["avg"],
        "sum": figures["sum"],
        **sketch.quantiles(sketch.from_bins(counts)),
    }
    if with_bins:
        stats["bins"] = {name: count for name, count in counts.items() if count}
    return stats


def _histogram(
    asked: Asked, found: dict[str, Any] | None, first_bucket: int, last_bucket: int, ms: int
) -> dict[str, Any]:
    counted = (found or {}).get("buckets", {})
    buckets: list[list[Any]] = []
    for bucket in range(first_bucket, last_bucket + 1):
        entry = counted.get(str(bucket), {"doc_count": 0})
        if not buckets and not entry["doc_count"] and not asked.since:
            continue  # no `since`: from the first bucket with a document
        row: list[Any] = [cursor_iso(cursor_at(bucket * ms / 1000)), entry["doc_count"]]
        if asked.split:
            row.append({_value(b): b["doc_count"] for b in entry.get("split", {}).get("buckets", [])})
        buckets.append(row)
    return {"interval": _duration(asked.interval), "buckets": buckets}


def _empty(
    asked: Asked, since: str | None, pending: list[tuple[str, str]], listed: list[dict[str, Any]] | None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "cursor": None,
        "since": since,
        "count": 0,
        "histogram": {"interval": _duration(asked.interval), "buckets": []},
        "pending": [list(batch) for batch in pending],
    }
    if asked.by:
        answer["top"] = {name: {"values": [], "other": 0, "missing": 0} for name in asked.by}
    if asked.stats:
        answer["stats"] = {name: _stats({"count": 0}, None, asked.bins) for name in asked.stats}
    if listed is not None:
        answer["fields"] = listed
    return answer


def _duration(seconds: float) -> str:
    return next(name for name, value in INTERVALS.items() if value == seconds)
