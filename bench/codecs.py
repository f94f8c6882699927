"""``python -m bench.codecs``: what Beater's JSON costs per document, with the standard library
and with the faster libraries (issue 26: orjson, msgspec), on the bodies the benchmark sends.

Measured per document, CPU time of this process (the median of ``--repeats`` runs of
``--documents`` documents): parsing a request body (a JSON array, as ``POST
/api/v0.1/docs/<index>`` gets it, and NDJSON, as ``_bulk`` does), and encoding the documents for
the engine (the array in a percolate request). The libraries are compared on the same bodies,
and each must give what the standard library gives, or its figure is not printed. orjson is
measured when it is installed (`pip install orjson`): it is not a dependency, as it reads
integers past 64 bits as floats, which would change what senders sent.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

# The throughput run's documents, and log lines as the page's run sends them.
SHAPES: dict[str, Callable[[int], dict]] = {
    "throughput": lambda n: {"user": f"u{random.randrange(10_000)}", "msg": "GET /api 200"},
    "log line": lambda n: {
        "@timestamp": "2026-12-06T10:00:00.123Z",
        "level": random.choice(["info", "warn", "error"]),
        "service": random.choice(["api", "db", "web"]),
        "host": f"host-{n % 50}",
        "status": random.choice([200, 201, 404, 500]),
        "duration_ms": round(random.random() * 300, 3),
        "message": f"GET /api/v1/items/{n} took long enough to be worth a line of its own",
        "tags": ["a", "b"],
        "http": {"method": "GET", "path": f"/api/v1/items/{n}"},
    },
}


def _stdlib() -> dict[str, Callable]:
    return {
        "parse": json.loads,
        "encode": lambda documents: b"[" + b",".join(json.dumps(d).encode() for d in documents) + b"]",
    }


def _orjson() -> dict[str, Callable]:
    orjson = importlib.import_module("orjson")
    return {"parse": orjson.loads, "encode": orjson.dumps}


def _msgspec() -> dict[str, Callable]:
    msgspec = importlib.import_module("msgspec")
    decoder, encoder = msgspec.json.Decoder(), msgspec.json.Encoder()
    return {"parse": decoder.decode, "encode": encoder.encode}


LIBRARIES = {"json": _stdlib, "orjson": _orjson, "msgspec": _msgspec}


def _cpu_per_document(work: Callable[[], Any], documents: int, repeats: int) -> float:
    """Microseconds of CPU per document, the median of ``repeats`` runs."""
    runs = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        runs.append((time.process_time() - started) / documents * 1e6)
    return statistics.median(runs)


def _figures(library: dict[str, Callable], documents: list[dict], repeats: int) -> dict[str, str]:
    """µs of CPU per document for each kind of work, or "differs" where the library's result
    is not the standard library's."""
    parse, encode = library["parse"], library["encode"]
    array = json.dumps(documents).encode()
    lines = [json.dumps(document).encode() for document in documents]
    same = parse(array) == documents and json.loads(encode(documents)) == documents
    works = {
        "parse array": lambda: parse(array),
        "parse ndjson": lambda: [parse(line) for line in lines],
        "encode array": lambda: encode(documents),
    }
    return {
        work: f"{_cpu_per_document(run, len(documents), repeats):.2f}" if same else "differs"
        for work, run in works.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.codecs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    random.seed(26)
    print(f"µs of CPU per document (median of {args.repeats} runs of {args.documents:,} documents)")
    print(f"{'shape':<11} {'work':<15}" + "".join(f"{name:>10}" for name in LIBRARIES))
    for shape, make in SHAPES.items():
        documents = [make(n) for n in range(args.documents)]
        columns = []
        for load in LIBRARIES.values():
            try:
                columns.append(_figures(load(), documents, args.repeats))
            except ImportError:
                columns.append({})
        for work in ("parse array", "parse ndjson", "encode array"):
            print(f"{shape:<11} {work:<15}" + "".join(f"{column.get(work, '-'):>10}" for column in columns))


if __name__ == "__main__":
    main()
