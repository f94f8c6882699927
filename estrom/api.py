"""Names of the WAMP API (error URIs, procedures, topics): shared by Beater, Tailor and tests."""

from __future__ import annotations

from typing import Any

INVALID_QUERY = "estrom.error.invalid_query"
INVALID_INDEX = "estrom.error.invalid_index"
UNKNOWN_SUBSCRIPTION = "estrom.error.unknown_subscription"
UNAVAILABLE = "estrom.error.unavailable"
TOO_MANY_QUERIES = "estrom.error.too_many_queries"
TOO_MANY_INDEXES = "estrom.error.too_many_indexes"  # ESTROM_MAX_PERCOLATOR_INDEXES reached
INVALID_ARGUMENT = "estrom.error.invalid_argument"
NOT_AUTHORIZED = "estrom.error.not_authorized"  # the caller's token may not read that index
NOT_AUTHENTICATED = "estrom.error.not_authenticated"  # no token, or not a valid one (router)
NO_STORE = "estrom.error.no_store"  # a backlog was asked of an estrom that keeps no documents


# The keyword argument of an event on a query's topic that carries no hits: the query was taken
# out of percolation (the search engine can no longer run it), and no hit will follow; its value
# says why.
ENDED = "ended"

# The key a hit has (true) when its sender named the document (a ``_bulk`` action's ``_id``):
# a resend of it may follow, which a reader that has it drops (tailor.resends, the page).
NAMED = "_named"
# The key of a hit of a query registered for highlights (``estrom.register(index, query,
# {"highlight": true})``, its own ID): ``{field: [its whole value, HTML-escaped, the terms that
# matched in <em>...</em>]}``, as the engine's highlighter gives it; fields it cannot highlight
# (a range on a number, ``_exists_``) are left out, and a hit with none has no key.
HIGHLIGHT = "highlight"

REGISTER = "estrom.register"
LOOKUP = "estrom.lookup"
BACKLOG = "estrom.backlog"
SUMMARY = "estrom.summary"
TOPIC_PREFIX = "docs-for-"

# The role of a Tailor admitted with ESTROM_TAILOR_SECRET: Beater sends it the hits of a batch
# once, on FEED, instead of an event per matching query; its per-query events exclude it.
TAILOR_ROLE = "tailor"
# The feed's topic, which only TAILOR_ROLE may subscribe to. An event carries hits, each once, and
# the keyword argument MATCHES: ``{query_id: [positions of its hits among them]}``.
FEED = "estrom.feed"
MATCHES = "matches"


def topic(query_id: str) -> str:
    """The topic on which the hits of the query ``query_id`` are published."""
    return TOPIC_PREFIX + query_id


MAX_FIELDS = 10  # an aggregation's `by` fields, and its `stats` fields, at most


def field_names(given: list[Any] | str, name: str) -> tuple[str, ...]:
    """The fields an aggregation's option ``name`` names (a list, or text separated by commas);
    ValueError says what is wrong with them."""
    parts = given.split(",") if isinstance(given, str) else given
    if not isinstance(parts, list) or not all(
        isinstance(f, str) and f.strip() and len(f) <= 256 for f in parts
    ):
        raise ValueError(f"'{name}' must be field names, separated by commas")
    fields = tuple(f.strip() for f in parts)
    if any(mark in f for f in fields for mark in "*?,"):
        raise ValueError(f"'{name}' names fields, not patterns: no '*', '?' or ','")
    if len(set(fields)) != len(fields):
        raise ValueError(f"'{name}' names a field more than once")
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"'{name}' may name at most {MAX_FIELDS} fields")
    return fields
