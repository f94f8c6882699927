"""What a client asks for: ``GET /api/v0.1/docs?i=<index>&q=<query>`` or ``?s=<ID>``, with
``limit``, ``backlog``, ``since``, ``after`` or ``highlight``; read and checked here, then opened by Tailor
(tailor.service).
"""

from __future__ import annotations

import json
import re
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

from twisted.web.server import Request

from estrom import api
from estrom.http import JsonResource, answer_later, error_answer
from tailor.aggregate import MAX_BUCKETS, Options
from tailor.service import Tailor


class DocsResource(JsonResource):
    """``/api/v0.1/docs``."""

    isLeaf = True
    allowedMethods = (b"GET",)

    def __init__(self, tailor: Tailor):
        super().__init__()
        self.tailor = tailor

    def render_GET(self, request: Request) -> bytes | int:
        try:
            opened = self.open(request)
        except ValueError as e:
            return error_answer(request, 400, str(e))
        return answer_later(request, opened, "stream")

    def open(self, request: Request) -> Coroutine[Any, Any, None]:
        """The stream ``request`` asks for, opening; ValueError says what is wrong with it."""
        asked = parameters(request.args)
        return self.tailor.open(
            request,
            asked.index,
            asked.query,
            asked.sid,
            asked.limit,
            asked.backlog,
            highlight=asked.highlight,
        )


class AggsResource(DocsResource):
    """``/api/v0.1/aggs``: the aggregated tail."""

    def open(self, request: Request) -> Coroutine[Any, Any, None]:
        asked, options, every = aggregation_parameters(request.args)
        return self.tailor.open(request, asked.index, asked.query, asked.sid, None, None, (options, every))


@dataclass(frozen=True)
class Asked:
    """What a client asks for: a query on an index, or the ID of one (``sid``)."""

    index: str | None
    query: Any  # a Lucene string or a DSL object; None with ``sid``
    sid: str | None
    limit: int | None
    backlog: dict[str, Any]  # Beater checks these options further
    highlight: bool = False  # hits with the engine's highlights (a registration of its own)


def parameters(query_args: dict[bytes, list[bytes]]) -> Asked:
    """What the URL's parameters (``request.args``) ask for; ValueError says what is wrong."""
    args = _decoded(query_args, {"limit", "backlog", "since", "after", "highlight"})
    limit = _positive(args, "limit")
    highlight = args.pop("highlight", "false")
    if highlight not in ("true", "false"):
        raise ValueError("'highlight' is true or false")
    backlog: dict[str, Any] = {}
    if "backlog" in args:
        backlog["last"] = _positive(args, "backlog")
    for name in ("since", "after"):
        if name in args:
            if not args[name].strip():
                raise ValueError(f"'{name}' is empty")
            backlog[name] = args[name]
    return replace(_asked(args, limit, backlog), highlight=highlight == "true")


def _decoded(query_args: dict[bytes, list[bytes]], known: set[str]) -> dict[str, str]:
    """The URL's parameters, each given once and in UTF-8, among ``known`` (and i, q, s)."""
    args = {}
    for name, values in query_args.items():
        name = name.decode("utf-8", "replace")
        if len(values) > 1:
            raise ValueError(f"parameter '{name}' is given more than once")
        try:
            args[name] = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"parameter '{name}' is not UTF-8") from None
    unknown = set(args) - known - {"i", "q", "s"}
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}; use i and q, or s")
    return args


def _asked(args: dict[str, str], limit: int | None, backlog: dict[str, Any]) -> Asked:
    if "s" in args:
        if "i" in args or "q" in args:
            raise ValueError("give either 's', or 'i' and 'q', not both")
        if not args["s"]:
            raise ValueError("'s' is empty")
        return Asked(None, None, args["s"], limit, backlog)
    if not args.get("i") or not args.get("q", "").strip():
        raise ValueError("give 'i' (the index) and 'q' (the query), or 's' (a subscription ID)")
    return Asked(args["i"], _query(args["q"]), None, limit, backlog)


# What an aggregation may be asked for (tailor.aggregate.Options).
AGGREGATION = {"by", "k", "stats", "window", "histogram", "split", "every", "since"}
MAX_K = 100
INTERVALS = {"1s": 1.0, "10s": 10.0, "1m": 60.0}
WINDOWS = (10.0, 86400.0)  # seconds, the least and the most
EVERY = (0.1, 60.0)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def aggregation_parameters(query_args: dict[bytes, list[bytes]]) -> tuple[Asked, Options, float]:
    """What ``/api/v0.1/aggs`` is asked: the query, the aggregation, and how often a frame is
    sent (seconds); ValueError names the parameter that is wrong."""
    args = _decoded(query_args, AGGREGATION)
    by, stats = _fields(args, "by"), _fields(args, "stats")
    split = None
    if "split" in args:
        split = args["split"].strip()
        if not split or any(mark in split for mark in ",*?") or len(split) > 256:
            raise ValueError("'split' must be one field's name")
    k = _positive(args, "k") or 10
    if k > MAX_K:
        raise ValueError(f"'k' must be at most {MAX_K}")
    since = None
    if "since" in args:
        since = args["since"].strip()
        if not since:
            raise ValueError("'since' is empty")
        if args.get("window", "all") != "all":
            raise ValueError(
                "'since' counts everything from a time on (window=all): leave 'window' out, or make it 'all'"
            )
    window: float | None = 300.0
    if args.get("window", "all" if since else "5m") == "all":
        window = None
    elif "window" in args:
        window = _seconds(args, "window", *WINDOWS)
    if "histogram" in args:
        if args["histogram"] not in INTERVALS:
            raise ValueError(f"'histogram' must be one of {', '.join(INTERVALS)}")
        interval = INTERVALS[args["histogram"]]
    else:
        interval = (
            1.0
            if window is not None and window <= 300
            else 10.0
            if window is not None and window <= 1800
            else 60.0
        )
    if window is not None and window / interval > MAX_BUCKETS:
        raise ValueError(
            f"'histogram' of {args.get('histogram')} makes more than {MAX_BUCKETS} buckets of the window: take a wider one"
        )
    if window is not None and window < interval:
        raise ValueError("'window' must be at least the histogram's interval")
    every = _seconds(args, "every", *EVERY) if "every" in args else 1.0
    options = Options(by=by, k=k, stats=stats, window=window, interval=interval, split=split, since=since)
    return _asked(args, None, {}), options, every


def _fields(args: dict[str, str], name: str) -> tuple[str, ...]:
    return api.field_names(args[name], name) if name in args else ()


def _seconds(args: dict[str, str], name: str, least: float, most: float) -> float:
    match = _DURATION.fullmatch(args[name].strip())
    if match is None:
        raise ValueError(f"'{name}' must be a duration such as 500ms, 10s, 5m or 1h")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not least <= seconds <= most:
        raise ValueError(f"'{name}' must be from {_say(least)} to {_say(most)}")
    return seconds


def _say(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms" if seconds < 1 else f"{seconds:g}s"


def _positive(args: dict[str, str], name: str) -> int | None:
    if name not in args:
        return None
    try:
        value = int(args[name])
    except ValueError:
        raise ValueError(f"'{name}' must be a positive integer") from None
    if value < 1:
        raise ValueError(f"'{name}' must be a positive integer")
    return value


def _query(text: str) -> Any:
    """A JSON object is query DSL; anything else is a Lucene query string."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except RecursionError:
            raise ValueError("'q' is nested too deeply") from None
        except ValueError:
            return text  # e.g. the range `{a TO b}`
        if isinstance(value, dict):
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    "'q' holds a lone UTF-16 surrogate (\\uD800-\\uDFFF), which is not text"
                ) from None
            return value
    return text
