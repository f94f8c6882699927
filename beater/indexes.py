"""The percolator indexes' names and layout, shared by what makes them (beater.mapping), what
percolates against them (beater.percolator) and the sweep (beater.sweep); and which index names a
sender may use (``check_index``).

Per source index ``<index>`` there is one percolator index ``estrom-queries-<index>``, and each
registered query is one document in it, whose ``_id`` is the query's ID.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from twisted.logger import Logger

from beater.engine import FailedItem

log = Logger()

PREFIX = "estrom-queries-"
QUERY_FIELD = "estrom_query"
ID_FIELD = "estrom_id"
META_FIELD = "estrom_meta"
ALL_FIELD = "estrom_all"
SEEN_FIELD = "estrom_seen"  # when someone last registered, looked up or listened to it (epoch s)
# Why the engine could not run a stored query at percolation time: the query is kept without
# its clause (out of percolation), so that a lookup can say why.
TAKEN_OUT_FIELD = "estrom_taken_out"
# A query registered for highlights: how the engine highlights its matches. "fields": in the
# fields it searches; "any": its terms wherever they are (it searches ALL_FIELD, a copy that is
# not in the document's source, so the fields it searches there cannot be told apart).
HIGHLIGHT_FIELD = "estrom_highlight"
META_KEY = "estrom"  # in the percolator index's mapping _meta: how it was made


def percolator_index(index: str) -> str:
    return PREFIX + index


def indexes_of(patterns: tuple[str, ...]) -> str:
    """The percolator indexes of the source indexes that ``patterns`` name, as a URL segment."""
    return ",".join(quote(percolator_index(pattern), safe="*") for pattern in patterns)


def replica_settings(replicas: str) -> dict[str, Any]:
    """``"0-1"`` (as many as the cluster has room for, up to 1) or a number of replicas."""
    if "-" in replicas:
        return {"index.number_of_shards": 1, "index.auto_expand_replicas": replicas}
    return {"index.number_of_shards": 1, "index.number_of_replicas": int(replicas)}


def versioned(action: str, hit: dict[str, Any]) -> dict[str, Any]:
    """A bulk action on the document of search ``hit`` carried out only if it is the version
    the search found (the search asked for ``seq_no_primary_term``)."""
    return {
        action: {
            "_index": hit["_index"],
            "_id": hit["_id"],
            "if_seq_no": hit["_seq_no"],
            "if_primary_term": hit["_primary_term"],
        }
    }


def log_failed_items(
    failed: Callable[[str, int], Any], what: str, refused: list[FailedItem], ids: list[str]
) -> None:
    """Log the items of a bulk request about stored queries that the engine refused (``ids``:
    the request's, by position), and count them with ``failed``."""
    if not refused:
        return
    failed("bulk_item", len(refused))
    log.warn(
        "Beater: the search engine refused to {what} {count} stored queries, e.g. {id}: {error}",
        what=what,
        count=len(refused),
        id=ids[refused[0].position],
        error=str(refused[0]),
    )


_FORBIDDEN_IN_INDEX = set('\\/*?"<>|,#: ')


class InvalidIndex(ValueError):
    """Not a name the engine accepts for an index, or not one estrom is configured to serve."""


def check_index(index: Any, patterns: tuple[str, ...] = ("*",)) -> str:
    """Return ``index`` if the engine accepts it as an index name and it matches one of
    ``patterns`` (shell-style, as in ``ESTROM_INDEX_PATTERNS``); raise InvalidIndex if not."""
    if not isinstance(index, str) or not index:
        raise InvalidIndex("the index name is missing")
    shown = index.encode("unicode_escape").decode("ascii")[:300]  # never echo control characters
    if len(percolator_index(index).encode("utf-8", "surrogatepass")) > 255:
        raise InvalidIndex("the index name is too long")
    if not index.isprintable():
        raise InvalidIndex(f"index name '{shown}' must not contain control or invisible characters")
    if index != index.lower():
        raise InvalidIndex(f"index name '{shown}' must be lowercase")
    if index[0] in "-_+.":
        raise InvalidIndex(f"index name '{shown}' must not start with '-', '_', '+' or '.'")
    if index.startswith(PREFIX):
        raise InvalidIndex(f"index names starting with '{PREFIX}' are estrom's own")
    if _FORBIDDEN_IN_INDEX & set(index):
        raise InvalidIndex(f"index name '{shown}' must not contain any of \\ / * ? \" < > | , # : or a space")
    if not any(fnmatch.fnmatchcase(index, pattern) for pattern in patterns):
        raise InvalidIndex(f"index '{shown}' is not served here (allowed: {', '.join(patterns)})")
    return index
