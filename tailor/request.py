"""What a client asks for: ``GET /api/v0.1/docs?i=<index>&q=<query>`` or ``?s=<ID>``, with
``limit``, ``backlog``, ``since`` or ``after``; read and checked here, then opened by Tailor
(tailor.service).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.web.server import Request

from estrom.http import JsonResource, answer_later, error_answer
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
            asked = parameters(request.args)
        except ValueError as e:
            return error_answer(request, 400, str(e))
        opened = self.tailor.open(request, asked.index, asked.query, asked.sid, asked.limit, asked.backlog)
        return answer_later(request, opened, "stream")


@dataclass(frozen=True)
class Asked:
    """What a client asks for: a query on an index, or the ID of one (``sid``)."""

    index: str | None
    query: Any  # a Lucene string or a DSL object; None with ``sid``
    sid: str | None
    limit: int | None
    backlog: dict[str, Any]  # Beater checks these options further


def parameters(query_args: dict[bytes, list[bytes]]) -> Asked:
    """What the URL's parameters (``request.args``) ask for; ValueError says what is wrong."""
    args = {}
    for name, values in query_args.items():
        name = name.decode("utf-8", "replace")
        if len(values) > 1:
            raise ValueError(f"parameter '{name}' is given more than once")
        try:
            args[name] = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"parameter '{name}' is not UTF-8") from None
    unknown = set(args) - {"i", "q", "s", "limit", "backlog", "since", "after"}
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}; use i and q, or s")
    limit = _positive(args, "limit")
    backlog: dict[str, Any] = {}
    if "backlog" in args:
        backlog["last"] = _positive(args, "backlog")
    for name in ("since", "after"):
        if name in args:
            if not args[name].strip():
                raise ValueError(f"'{name}' is empty")
            backlog[name] = args[name]
    if "s" in args:
        if "i" in args or "q" in args:
            raise ValueError("give either 's', or 'i' and 'q', not both")
        if not args["s"]:
            raise ValueError("'s' is empty")
        return Asked(None, None, args["s"], limit, backlog)
    if not args.get("i") or not args.get("q", "").strip():
        raise ValueError("give 'i' (the index) and 'q' (the query), or 's' (a subscription ID)")
    return Asked(args["i"], _query(args["q"]), None, limit, backlog)


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
