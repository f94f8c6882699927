"""router/configure.py: the one place the router's configuration is changed for where it runs
(dev/stack.py and router/Dockerfile both use it; tests/test_compose_unit.py runs the image's step)."""

from __future__ import annotations

import json

import pytest

from dev.stack import ROOT
from router.configure import configure, origins, permission

CONFIG = json.loads((ROOT / "router" / ".crossbar" / "config.json").read_text())


def _websocket(config: dict) -> dict:
    (transport,) = config["workers"][0]["transports"]
    return transport["web"]["paths"]["ws"]


def test_the_pages_own_origins_move_with_the_port_and_others_are_added_once():
    before = json.dumps(CONFIG)
    changed = configure(
        CONFIG, port=18080, allowed_origins=origins("https://a.example, http://localhost:18080")
    )
    assert json.dumps(CONFIG) == before, "the configuration read is left as it was"
    assert _websocket(changed)["options"]["allowed_origins"] == [
        "http://127.0.0.1:18080",
        "http://localhost:18080",
        "https://a.example:443",
    ]
    (transport,) = changed["workers"][0]["transports"]
    assert transport["endpoint"] == {**CONFIG["workers"][0]["transports"][0]["endpoint"], "port": 18080}


def test_relative_paths_are_made_absolute_from_the_cbdir():
    cbdir = ROOT / "router" / ".crossbar"
    changed = configure(CONFIG, cbdir=cbdir)
    (transport,) = changed["workers"][0]["transports"]
    assert transport["web"]["paths"]["/"]["directory"] == str((ROOT / "router" / "web").resolve())
    assert changed["workers"][0]["options"]["pythonpath"][0] == str((ROOT / "router").resolve())


def test_origins_get_their_default_port_and_lose_a_trailing_slash():
    assert origins(" http://h/, https://h, http://h:81,, https://*.h:*") == [
        "http://h:80",
        "https://h:443",
        "http://h:81",
        "https://*.h:*",
    ]
    assert origins(None) == [] and origins("") == []


def test_a_permission_names_wamp_actions_only():
    assert permission("docs-for-", "prefix", "subscribe")["allow"] == {
        "call": False,
        "register": False,
        "publish": False,
        "subscribe": True,
    }
    with pytest.raises(ValueError, match="not WAMP actions"):
        permission("x", "exact", "subscribe", "read")
