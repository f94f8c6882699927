"""What the benchmark's phases share: its ports, and small measures (CPU spent, medians,
percentiles, sizes) and waits."""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from dev.stack import Ports
from estrom.clients import HttpStream, eventually

PORTS = Ports(engine=29200, router=28080, beater=28070, tailor=28090)
ALL_QUERIES = {"ESTROM_PERCOLATE_ONLY_ACTIVE": "false"}


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each part used between two readings of Bench._cpu."""
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


def crossbar_process(entry: Path) -> str:
    """Which of a crossbar node's processes /proc/<pid> is (its title names its class)."""
    try:
        title = (entry / "cmdline").read_bytes()
    except OSError:
        return "gone"
    for kind, marker in (("router-workers", b"RouterController"), ("proxy-workers", b"ProxyController")):
        if marker in title:
            return kind
    return "controller"


def p50(before: dict, after: dict, name: str, stage: str) -> float:
    """The median of a histogram's observations of ``stage`` between two scrapes, interpolated
    within its bucket."""
    buckets = sorted(
        (float(dict(labels)["le"]), value - before.get((sample, labels), 0.0))
        for (sample, labels), value in after.items()
        if sample == f"{name}_bucket" and dict(labels).get("stage") == stage
    )
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    half, lower, below = buckets[-1][1] / 2, 0.0, 0.0
    for bound, count in buckets:
        if count >= half and bound != float("inf"):
            return lower + (bound - lower) * (half - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def user_documents(count: int, size: int) -> list[dict]:
    """``size`` documents, each matching one of the ``count`` queries ``user:u<n>``."""
    return [{"user": f"u{random.randrange(count)}", "msg": "GET /api 200"} for _ in range(size)]


def added(total: dict[str, float], more: dict[str, float]) -> dict[str, float]:
    return {name: round(total.get(name, 0.0) + seconds, 2) for name, seconds in more.items()}


async def latency_stream(tailor_url: str, index: str, query: str, latencies: list[float]) -> HttpStream:
    """A stream that keeps no hit, and records each one's latency from its "sent_at"."""

    def arrived(hit: dict) -> None:
        if "sent_at" in hit["_source"]:
            latencies.append(time.time() - float(hit["_source"]["sent_at"]))  # ijson gives Decimal

    stream = await HttpStream.open(tailor_url, keep=False, on_hit=arrived, i=index, q=query)
    await stream.wait_for_head()
    return stream


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": values[0] if values else 0.0, "p99": values[0] if values else 0.0, "n": len(values)}
    quantiles = statistics.quantiles(values, n=100)
    return {"p50": round(quantiles[49], 1), "p99": round(quantiles[98], 1), "n": len(values)}


def mib(size: int) -> float:
    return round(size / 2**20, 1)


async def until(condition: Callable[[], bool], seconds: float) -> None:
    """Wait for ``condition`` at most ``seconds``; the figures say what was reached."""
    with contextlib.suppress(AssertionError):
        await eventually(condition, seconds)
