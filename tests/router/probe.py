"""Code run in the router's own Python (.venv-router), as its worker runs it: crossbar is imported
once (that takes seconds), then each case runs in a forked child of its own, so that a case which
breaks what it names, as an upgrade would, leaves the others as installed.

Test modules add their cases when they are imported; tests/router/conftest.py starts the one
process as soon as collection has selected a test of such a module, so that it runs beside the
rest of the unit layer instead of before it. A case's code sets ``result`` (anything JSON)."""

from __future__ import annotations

import json
import subprocess
from functools import cache

from dev.stack import ROOT

_RUNNER = """
import json, os, sys
sys.path.insert(0, "router")
import autobahn.util, crossbar._util, crossbar.router.router, crossbar.router.session
from crossbar.router.broker import Broker
from twisted.internet import abstract
import quietlog, readers
cases = json.loads(sys.stdin.read())
for name, code in cases.items():
    pid = os.fork()
    if pid == 0:
        scope = dict(globals())
        try:
            exec(code, scope)
            line = json.dumps([name, scope["result"]])
        except BaseException as e:
            line = json.dumps([name, {"raised": repr(e)}])
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
        os._exit(0)
    os.waitpid(pid, 0)
"""

_CASES: dict[str, dict[str, str]] = {}  # by the module that added them


def add(module: str, name: str, code: str) -> None:
    _CASES.setdefault(module, {})[name] = code


def start(modules: set[str]) -> None:
    """Start the runner if a module in ``modules`` added cases."""
    if modules & _CASES.keys():
        _runner()


@cache
def _runner() -> subprocess.Popen:
    cases = {name: code for added in _CASES.values() for name, code in added.items()}
    runner = subprocess.Popen(
        [str(ROOT / ".venv-router" / "bin" / "python"), "-c", _RUNNER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runner.stdin.write(json.dumps(cases))
    runner.stdin.close()
    runner.stdin = None  # written whole: communicate() has nothing more to send
    return runner


@cache
def _results() -> dict:
    runner = _runner()
    out, err = runner.communicate(timeout=120)  # a runner that hangs fails the tests, in time
    assert runner.returncode == 0, err
    return dict(json.loads(line) for line in out.splitlines())


def result(name: str):
    """What case ``name`` set ``result`` to."""
    results = _results()
    assert name in results, f"the case {name!r} did not finish"
    return results[name]
