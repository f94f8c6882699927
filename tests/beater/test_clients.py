"""The official clients, in their own virtualenvs (`make clients`, pinned in tests/clients/):
the `elasticsearch` Python client 8 and 9 (`info()`, `helpers.bulk`, `streaming_bulk`,
`parallel_bulk`, `index()`) and opensearch-py (`helpers.bulk`) send 10,000 documents each to
Beater, with the store on; every one arrives once at a stream open throughout, and is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from estrom.clients import HttpStream, eventually, http

ROOT = Path(__file__).resolve().parents[2]
SEND = str(ROOT / "tests" / "clients" / "send.py")
DOCUMENTS = 10_000
CLIENTS = {
    "elasticsearch-8": ("es8", "elasticsearch", ("bulk", "streaming_bulk", "parallel_bulk", "index")),
    "elasticsearch-9": ("es9", "elasticsearch", ("bulk", "streaming_bulk", "parallel_bulk", "index")),
    "opensearch-py": ("opensearch", "opensearch", ("bulk",)),
}
INDEX_CALLS = 1_000  # of the 10,000, sent one request each (index()); the rest by the helpers

pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest_twisted.ensureDeferred
async def test_an_official_client_sends_10000_documents_each_arrives_once(stored, index, client):
    venv, library, methods = CLIENTS[client]
    python = ROOT / ".clients" / venv / "bin" / "python"
    assert python.exists(), f"{python} is missing: make clients"
    stream = await HttpStream.open(stored.tailor_url, i=index, q="_exists_:client")
    try:
        await stream.wait_for_head()
        counts = {method: INDEX_CALLS if method == "index" else 0 for method in methods}
        helpers = [method for method in methods if method != "index"]
        for position, method in enumerate(helpers):
            counts[method] = (DOCUMENTS - sum(counts.values())) // (len(helpers) - position)
        first = 0
        for method in methods:
            out, err, code = await getProcessOutputAndValue(
                str(python),
                [SEND, library, stored.beater_url, index, method, str(first), str(counts[method])],
            )
            assert code == 0, err.decode()[-3000:]
            said = json.loads(out.decode().strip().splitlines()[-1])
            assert said["taken"] == counts[method] and said["errors"] == [], said
            first += counts[method]
        assert first == DOCUMENTS
        hits = await stream.wait_for_hits(DOCUMENTS, timeout=120)
        numbers = sorted(hit["_source"]["n"] for hit in hits)
        assert numbers == list(range(DOCUMENTS)), f"{len(numbers)} hits, {len(set(numbers))} distinct"

        async def stored_all() -> bool:
            await http.post(f"{stored.engine_url}/{index}/_refresh")
            answer = await http.get(f"{stored.engine_url}/{index}/_count")
            return (await answer.json()).get("count") == DOCUMENTS

        await eventually(stored_all, what=f"the {DOCUMENTS} documents in the engine")
    finally:
        stream.close()
