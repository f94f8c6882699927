"""Phase 5 (``highlight``): what highlights (why a document matched) cost: the batched run with
every query registered for them."""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING

from bench.common import added, spent

if TYPE_CHECKING:
    from bench.run import Bench


async def highlight(bench: Bench, count: int) -> None:
    """The batched run on ``count`` queries, and on the same queries registered for
    highlights (every match highlighted: the most it costs), in turn: documents/s, and CPU
    per document of Beater and the engine."""
    plain, marked = f"bench-{count}", f"bench-{count}-highlight"
    if plain not in bench.ids:
        await bench.register(plain, count)
    await bench.register(marked, count, highlight=True)
    runs: dict[str, list[float]] = {"plain": [], "highlight": []}
    delivered = dict.fromkeys(runs, 0)
    cpu: dict[str, dict[str, float]] = {name: {} for name in runs}
    for _ in range(bench.args.repeats):
        for name, index in (("plain", plain), ("highlight", marked)):
            cpu_before = bench.cpu()
            docs_per_s, _, received = await bench.load(bench.urls["batched"], index, count)
            cpu[name] = added(cpu[name], spent(cpu_before, bench.cpu()))
            runs[name].append(docs_per_s)
            delivered[name] += received
    figures: dict = {
        name: {
            "docs_per_s": statistics.median(runs[name]),
            "runs": runs[name],
            "cpu_ms_per_doc": {
                "beater": 1000 * cpu[name]["beater-batched"] / max(delivered[name], 1),
                "engine": 1000 * cpu[name]["engine"] / max(delivered[name], 1),
            },
        }
        for name in runs
    }
    figures["queries"] = count
    figures["highlight_over_plain"] = figures["highlight"]["docs_per_s"] / figures["plain"]["docs_per_s"]
    bench.results["highlight"] = figures
    print(f"bench: highlight: {json.dumps(figures)}", flush=True)
