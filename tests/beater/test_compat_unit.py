"""Beater answers as an Elasticsearch cluster where clients look (beater.compat): the version
ESTROM_COMPAT_VERSION names, `_bulk` items worded as that version words them, media types taken
and refused, the answer in the type accepted."""

from __future__ import annotations

import pytest

from beater.compat import Compat, ElasticsearchVersion, answer_type, plain_type


def test_versions_taken_and_refused():
    assert ElasticsearchVersion(" 9.1.0") == "9.1.0" and Compat("7.10.2").major == 7
    for bad in ("8", "10.0.0", "6.8.0", "8.x.0", ""):
        with pytest.raises(ValueError):
            ElasticsearchVersion(bad)
    assert plain_type("application/vnd.elasticsearch+json", "compatible-with=9") == "application/json"
    assert plain_type("application/vnd.elasticsearch+x-ndjson", "") == "application/x-ndjson"
    assert plain_type("text/plain", "") == "text/plain"
    with pytest.raises(ValueError, match="compatible-with=6"):
        plain_type("application/vnd.elasticsearch+json", "compatible-with=6")
    # A number too long to be a version is no version (int() of thousands of digits raises).
    assert (
        plain_type("application/vnd.elasticsearch+json", "compatible-with=" + "9" * 5000)
        == "application/json"
    )


def test_bulk_items_are_worded_as_the_version_announced():
    item = {"_index": "events", "_id": "1", "status": 201}
    assert Compat("7.10.2").bulk_item(item) == {
        "_index": "events",
        "_type": "_doc",
        "_id": "1",
        "status": 201,
    }
    assert Compat("8.17.0").bulk_item(item) == item
    assert Compat("9.0.0").info()["version"]["build_flavor"] == "default"
    assert Compat("7.10.2").info()["version"]["build_flavor"] == "oss"


class _Request:
    def __init__(self, accept: bytes | None):
        self.accept = accept

    def getHeader(self, name):
        return self.accept


def test_the_answer_is_in_the_type_accepted():
    assert answer_type(_Request(b"application/vnd.elasticsearch+json; compatible-with=9")) == (
        b"application/vnd.elasticsearch+json; compatible-with=9"
    )
    assert answer_type(_Request(b"application/json")) is None
    assert answer_type(_Request(None)) is None
