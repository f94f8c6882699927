"""The router worker's debug-log arguments cost nothing below debug level (router/quietlog.py).

Run in the router's own Python (.venv-router: crossbar and its autobahn), as the worker runs it.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache

from dev.stack import ROOT

PROBE = """
import json, pprint, sys
sys.path.insert(0, "router")
import autobahn.util, crossbar._util, crossbar.router.router as router
from crossbar.router.broker import Broker
from quietlog import quiet_debug_arguments
before = {"hltype": crossbar._util.hltype(Broker.processPublish), "hlval": autobahn.util.hlval("x")}
quieted = quiet_debug_arguments(sys.argv[1])
value = {"allow": True, "cache": False, "disclose": False}
print(json.dumps({
    "quieted": quieted,
    "before": before,
    "hltype": crossbar._util.hltype(Broker.processPublish),
    "hlflag": crossbar._util.hlflag(True),
    "hlval": autobahn.util.hlval("x"),
    "hltype_autobahn": autobahn.util.hltype(Broker.processPublish),
    "pformat_is_str": isinstance(router.pformat(value), str),
    "pformat": "{}".format(router.pformat(value)),
    "pprint": pprint.pformat(value),
}))
"""


LEVELS = ("warn", "debug")


@cache
def _probes() -> dict[str, subprocess.Popen]:
    # Both at once: importing crossbar takes seconds, and the unit layer should take few.
    python = ROOT / ".venv-router" / "bin" / "python"
    return {
        level: subprocess.Popen(
            [str(python), "-c", PROBE, level],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for level in LEVELS
    }


def probe(level: str) -> dict:
    """What PROBE saw in the router's Python at log level ``level`` (one of LEVELS)."""
    out, err = _probes()[level].communicate(timeout=120)
    assert _probes()[level].returncode == 0, err
    return json.loads(out)


def test_below_debug_the_arguments_are_plain_text_and_pformat_waits():
    seen = probe("warn")
    assert seen["quieted"]
    assert "\x1b[" in seen["before"]["hltype"], "crossbar colours its highlighted text"
    # The same words, without the terminal colours click.style adds.
    assert seen["hltype"] == "<crossbar.router.broker.Broker.processPublish>"
    assert seen["hltype_autobahn"] == "<crossbar.router.broker.Broker.processPublish>"
    assert (seen["hlflag"], seen["hlval"]) == ("YES", "x")
    # pformat returns a stand-in that renders the same text, only when a log line is formatted.
    assert not seen["pformat_is_str"]
    assert seen["pformat"] == seen["pprint"]


def test_at_debug_level_nothing_changes():
    seen = probe("debug")
    assert not seen["quieted"]
    assert seen["hltype"] == seen["before"]["hltype"] and "\x1b[" in seen["hltype"]
    assert seen["pformat_is_str"]
