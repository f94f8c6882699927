"""Fuzzing the real parsers and the validator: whatever comes in, a clear refusal or a value
that everything downstream can handle; never another exception.

`make test` runs a fixed seed and ESTROM_FUZZ_EXAMPLES (default 1,000) examples per test;
`make fuzz` runs 25,000 per test (100,000 in all) with a random seed.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings

from beater.documents import BadDocuments, DocumentLimits, parse_documents
from beater.identity import identify
from beater.validation import InvalidQuery, check_clause
from tests.fuzz.strategies import content_types, dsl_queries, ingest_bodies, lucene_strings, queries

EXAMPLES = int(os.environ.get("ESTROM_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("ESTROM_FUZZ_RANDOM") != "1",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _identified_or_refused(query) -> None:
    try:
        identified = identify("events", query)
    except InvalidQuery as e:
        assert str(e)
        return
    # What is stored passes the checks again, is JSON, and is its own canonical form.
    check_clause(identified.clause, _limits_for_stored())
    json.dumps(identified.clause).encode("utf-8")
    assert identify("events", identified.query).id == identified.id


def _limits_for_stored():
    from beater.validation import Limits

    # The canonical form of a query may be a little larger than what was sent (long forms).
    return Limits(max_bytes=64 * 1024, max_clauses=4096)


@FUZZ
@given(lucene_strings)
def test_lucene_strings(text):
    _identified_or_refused(text)


@FUZZ
@given(dsl_queries)
def test_dsl_queries(query):
    _identified_or_refused(query)


@FUZZ
@given(queries)
def test_any_query(query):
    _identified_or_refused(query)


@FUZZ
@given(ingest_bodies, content_types)
def test_ingest_bodies(body, content_type):
    limits = DocumentLimits(max_documents=100, max_depth=64)
    try:
        documents = parse_documents(body, content_type.split(";")[0], limits)
    except BadDocuments as e:
        assert str(e)
        return
    assert documents and all(isinstance(document, dict) for document in documents)
    json.dumps(documents, ensure_ascii=False, allow_nan=False).encode("utf-8")
