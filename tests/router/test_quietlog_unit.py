"""The router worker's debug-log arguments cost nothing below debug level (router/quietlog.py).

Run in the router's own Python (tests/router/probe.py: crossbar and its autobahn), as the worker
runs it.
"""

from __future__ import annotations

from tests.router import probe

SEE = """
import pprint
import crossbar.router.router as router
before = {{"hltype": crossbar._util.hltype(Broker.processPublish), "hlval": autobahn.util.hlval("x")}}
quieted = quietlog.quiet_debug_arguments("{level}")
value = {{"allow": True, "cache": False, "disclose": False}}
result = {{
    "quieted": quieted,
    "before": before,
    "hltype": crossbar._util.hltype(Broker.processPublish),
    "hlflag": crossbar._util.hlflag(True),
    "hlval": autobahn.util.hlval("x"),
    "hltype_autobahn": autobahn.util.hltype(Broker.processPublish),
    "pformat_is_str": isinstance(router.pformat(value), str),
    "pformat": "{{}}".format(router.pformat(value)),
    "pprint": pprint.pformat(value),
}}
"""

LEVELS = ("warn", "debug")
for _level in LEVELS:
    probe.add(__name__, f"quietlog: {_level}", SEE.format(level=_level))


def probe_at(level: str) -> dict:
    """What SEE saw in the router's Python at log level ``level`` (one of LEVELS)."""
    return probe.result(f"quietlog: {level}")


def test_below_debug_the_arguments_are_plain_text_and_pformat_waits():
    seen = probe_at("warn")
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
    seen = probe_at("debug")
    assert not seen["quieted"]
    assert seen["hltype"] == seen["before"]["hltype"] and "\x1b[" in seen["hltype"]
    assert seen["pformat_is_str"]
