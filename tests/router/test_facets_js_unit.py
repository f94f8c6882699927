"""The page's facets and refined queries (router/web/facets.js) and highlights (marks.js): unit tests in Node's own test
runner (tests/js/*.test.mjs)."""

from __future__ import annotations

import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_facets_js_unit_tests_pass_in_node():
    ran = subprocess.run(
        ["node", "--test", "tests/js/facets.test.mjs", "tests/js/marks.test.mjs"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "# fail 0" in ran.stdout and "# pass 8" in ran.stdout, ran.stdout
