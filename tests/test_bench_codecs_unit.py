"""bench/codecs.py, a seeded small run: it runs, and msgspec (Beater's JSON) gives exactly what
the standard library gives on both shapes of documents, or its figure would read "differs"."""

from __future__ import annotations

import subprocess
import sys

from dev.stack import ROOT


def test_the_codecs_bench_runs_and_msgspec_reads_and_writes_as_the_standard_library():
    done = subprocess.run(
        [sys.executable, "-m", "bench.codecs", "--documents", "300", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert len(rows) == 6, done.stdout
    header = done.stdout.splitlines()[1].split()
    for row in rows:
        figures = dict(zip(header[2:], row[-len(header[2:]) :], strict=True))
        assert float(figures["json"]) > 0 and float(figures["msgspec"]) > 0, done.stdout
