"""go-elasticsearch 8.19.7's ``esutil.BulkIndexer`` (the Go client's bulk helper, in
tests/shippers/bulkindexer, built by ``make shippers``): after the client's product check, it
sends the documents made of the syslog lines with ``create`` actions to ``_bulk``, once with
plain JSON and once with the versioned media types (``ELASTIC_CLIENT_APIVERSIONING``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from tests.shippers import PROGRAM, ROOT, ship

COUNT = 10_000
BULKINDEXER = ROOT / ".shippers" / "bin" / "bulkindexer"

pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


class BulkIndexer:
    """Runs the program once on what it is sent: each syslog line, the document a shipper makes."""

    def __init__(self, workdir: Path, beater: str, index: str, versioned: bool):
        self.workdir, self.beater, self.index = workdir, beater, index
        self.env = {**os.environ, "ELASTIC_CLIENT_APIVERSIONING": "true" if versioned else "false"}
        self.result: tuple[bytes, bytes, int] | None = None

    async def listening(self) -> None:
        pass  # nothing runs before it is sent something

    async def send(self, lines: list[str]) -> None:
        documents = self.workdir / "documents.ndjson"
        with documents.open("w") as file:
            for line in lines:
                head, message = line.split(": ", 1)
                file.write(
                    json.dumps({"program": PROGRAM, "host": head.split()[-2], "message": message}) + "\n"
                )

        def done(result: tuple[bytes, bytes, int]) -> None:
            self.result = result

        getProcessOutputAndValue(
            str(BULKINDEXER), [self.beater, self.index, str(documents)], env=self.env
        ).addCallback(done)

    def finished(self) -> bool:
        if self.result is None:
            return False
        out, err, code = self.result
        assert code == 0, err.decode()[-3000:]
        figures = json.loads(out)
        assert (figures["NumAdded"], figures["NumFailed"]) == (COUNT, 0), figures
        return True


@pytest.mark.parametrize("versioned", [False, True], ids=["json", "versioned"])
@pytest_twisted.ensureDeferred
async def test_go_elasticsearch_bulk_indexer_sends_every_document_once(stored, index, tmp_path, versioned):
    indexer = BulkIndexer(tmp_path, stored.beater_url, index, versioned)
    await ship(stored, index, indexer, COUNT, settled=indexer.finished)
