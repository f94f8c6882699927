"""The router's patches of crossbar and Twisted (router/readers.py, router/quietlog.py) check at
start-up that what they patch is there and works as they expect, and refuse otherwise: an
upgrade that changed it stops the router (tests/router/test_embedded.py: a component whose start
fails stops it) instead of silently switching the slow-reader bound or the quiet logs off.

Run in the router's own Python (tests/router/probe.py), each case in a process of its own: a
case breaks what it names first, as an upgrade would."""

from __future__ import annotations

import json

import pytest

from dev.stack import ROOT
from tests.router import probe

CHECK = """
{breaks}
try:
    readers.check()
    quietlog.quiet_debug_arguments("warn")
except RuntimeError as e:
    result = f"refused: {{e}}"
else:
    result = "accepted"
"""

CASES = {
    "as installed": ("", "accepted"),
    "Router.send takes other arguments": (
        "crossbar.router.router.Router.send = lambda self, msg: None",
        "Router.send is not send(self, session, msg)",
    ),
    "Twisted keeps unsent bytes elsewhere": (
        "abstract.FileDescriptor.write = lambda self, data: None",
        "no longer keep unsent bytes where pending_bytes reads them",
    ),
    "crossbar's hl is gone": ("del crossbar._util.hl", "no longer has crossbar._util.hl"),
    "highlighting no longer goes through hl": (
        "crossbar._util.hltype = lambda obj: '\\x1b[33m' + str(obj)",
        "highlighting no longer goes through what it replaces",
    ),
}
for _case, (_breaks, _) in CASES.items():
    probe.add(__name__, f"patch: {_case}", CHECK.format(breaks=_breaks))


@pytest.mark.parametrize("case", list(CASES))
def test_a_patch_refuses_what_it_does_not_recognise(case):
    assert CASES[case][1] in probe.result(f"patch: {case}")


def test_each_embedded_component_joins_with_no_more_rights_than_its_job():
    # The slow-reader bound makes no WAMP call: its role may do nothing. The authorizer's role
    # may register the authorizer and authenticator, look up a query, and end a session.
    config = json.loads((ROOT / "router" / ".crossbar" / "config.json").read_text())
    (worker,) = [worker for worker in config["workers"] if worker.get("components")]
    roles = {role["name"]: role for realm in worker["realms"] for role in realm["roles"]}
    joins = {component["classname"]: component["role"] for component in worker["components"]}
    assert joins == {"authorizer.Authorizer": "authorizer", "readers.SlowReaders": "guard"}
    assert roles["guard"]["permissions"] == []
    allowed = {
        (permission["uri"], action)
        for permission in roles["authorizer"]["permissions"]
        for action, yes in permission["allow"].items()
        if yes
    }
    assert allowed == {
        ("router.authorize", "register"),
        ("router.authenticate", "register"),
        ("estrom.lookup", "call"),
        ("wamp.session.kill_by_authid", "call"),
    }
