"""Names of the WAMP API (error URIs, procedures, topics): shared by Beater, Tailor and tests."""

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

REGISTER = "estrom.register"
LOOKUP = "estrom.lookup"
BACKLOG = "estrom.backlog"
SUMMARY = "estrom.summary"
TOPIC_PREFIX = "docs-for-"


def topic(query_id: str) -> str:
    """The topic on which the hits of the query ``query_id`` are published."""
    return TOPIC_PREFIX + query_id
