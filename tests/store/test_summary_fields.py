"""``estrom.summary`` with ``fields``: the fields the store maps, for a reader that does not know
them yet (the page fills its field list so)."""

from __future__ import annotations

import pytest
import pytest_twisted

from estrom import api
from estrom.clients import docs_url, post, wamp_session

pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


@pytest_twisted.ensureDeferred
async def test_summary_lists_the_stored_fields_and_which_can_be_counted(stored, index):
    stack = stored
    documents = [
        {"level": "error", "service": "api", "ms": 5, "ok": False, "http": {"status": 500}},
        {"level": "info", "msg": "x" * 300, "tags": ["a", "b"]},
    ]
    status, answer = await post(docs_url(stack.beater_url, index), documents)
    assert status == 200, answer
    client = await wamp_session(stack.router_url)
    try:
        query_id = await client.call(api.REGISTER, index, {"match_all": {}})
        summary = await client.call(api.SUMMARY, query_id, {"fields": True, "by": ["service"]})
    finally:
        client.leave()
    fields = {field["name"]: field for field in summary["fields"]}
    assert sorted(fields) == ["http.status", "level", "ms", "msg", "ok", "service", "tags"], fields
    assert not any(name.startswith("estrom_") for name in fields)
    # Strings are text with a keyword: counted by it. Numbers take statistics.
    assert fields["service"] == {"name": "service", "type": "text", "by": True, "stats": False}
    assert fields["ms"]["by"] and fields["ms"]["stats"]
    assert fields["http.status"]["stats"]
    assert fields["ok"] == {"name": "ok", "type": "boolean", "by": True, "stats": False}
    assert summary["count"] == 2
    assert summary["top"]["service"]["values"] == [["api", 1]]


@pytest_twisted.ensureDeferred
async def test_fields_of_an_index_not_stored_yet_are_none(stored, index):
    client = await wamp_session(stored.router_url)
    try:
        query_id = await client.call(api.REGISTER, index, {"match_all": {}})
        summary = await client.call(api.SUMMARY, query_id, {"fields": True})
        assert summary["fields"] == [] and summary["count"] == 0
    finally:
        client.leave()
