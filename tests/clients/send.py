"""Send numbered documents to Beater with an official client, as an application would: run in
the client's own virtualenv (.clients/<name>, `make clients`), by tests/beater/test_clients.py.

    python send.py elasticsearch|opensearch URL INDEX METHOD FIRST COUNT

METHOD: bulk, streaming_bulk, parallel_bulk (the client's helpers), index (one call per
document). Each document is {"client": ..., "method": METHOD, "n": FIRST + i}. Prints one JSON
line: what the client said (info(), documents it reports taken, errors).
"""

from __future__ import annotations

import json
import sys
from importlib import metadata


def main() -> None:
    library, url, index, method, first, count = sys.argv[1:7]
    first, count = int(first), int(count)
    if library == "elasticsearch":
        from elasticsearch import Elasticsearch, helpers

        client = Elasticsearch(url, request_timeout=60)
    else:
        from opensearchpy import OpenSearch, helpers

        client = OpenSearch(url, timeout=60)
    name = f"{library}-{metadata.version('elasticsearch' if library == 'elasticsearch' else 'opensearch-py')}"
    info = client.info()
    documents = [{"client": name, "method": method, "n": first + i} for i in range(count)]
    actions = ({"_index": index, "_source": document} for document in documents)
    errors: list = []
    if method == "bulk":
        taken, errors = helpers.bulk(client, actions, chunk_size=500, raise_on_error=False)
    elif method == "streaming_bulk":
        taken = 0
        for ok, item in helpers.streaming_bulk(client, actions, chunk_size=500, raise_on_error=False):
            taken += ok
            if not ok:
                errors.append(item)
    elif method == "parallel_bulk":
        taken = 0
        for ok, item in helpers.parallel_bulk(
            client, actions, thread_count=4, chunk_size=250, raise_on_error=False
        ):
            taken += ok
            if not ok:
                errors.append(item)
    else:
        taken = 0
        for document in documents:
            answer = (
                client.index(index=index, document=document)
                if library == "elasticsearch"
                else client.index(index=index, body=document)
            )
            taken += answer["result"] == "created"
    print(json.dumps({"client": name, "info": dict(info), "taken": taken, "errors": errors[:5]}))


if __name__ == "__main__":
    main()
