"""The router's configuration as one deployment runs it: router/.crossbar/config.json with its
port, interface, browser origins and paths changed, and nothing else. The one place that writes
it: dev/stack.py (`make up`, the tests, the benchmark) imports it; router/Dockerfile runs it on
the image's copy (standard library only: the image's Python has crossbar and nothing of estrom's).

    python router/configure.py [--interface 0.0.0.0] [--origins ORIGINS] config.json

crossbar reads no environment variable inside a list, so the origins are written into the file.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def origins(value: str | None) -> list[str]:
    """The origins in a comma-separated list such as $ESTROM_ALLOWED_ORIGINS, each with its port:
    autobahn compares "scheme://host:port", the port written out even when it is the default."""
    listed = [origin.strip().rstrip("/") for origin in (value or "").split(",")]
    return [
        origin
        if origin.rpartition(":")[2].isdigit() or origin.endswith(":*")
        else origin + (":443" if origin.startswith("https:") else ":80")
        for origin in listed
        if origin
    ]


def permission(uri: str, match: str, *allowed: str, disclose: bool = False) -> dict[str, Any]:
    """A role's permission on ``uri`` (matched ``exact`` or as a ``prefix``): the actions
    ``allowed`` (call, register, publish, subscribe), and whether callers and publishers are
    disclosed."""
    actions = ("call", "register", "publish", "subscribe")
    unknown = set(allowed) - set(actions)
    if unknown:
        raise ValueError(f"not WAMP actions: {sorted(unknown)}")
    return {
        "uri": uri,
        "match": match,
        "allow": {action: action in allowed for action in actions},
        "disclose": {"caller": disclose, "publisher": disclose},
        "cache": True,
    }


def configure(
    config: dict[str, Any],
    *,
    port: int | None = None,
    interface: str | None = None,
    allowed_origins: Sequence[str] = (),
    cbdir: Path | None = None,
) -> dict[str, Any]:
    """A copy of ``config`` whose transports listen on ``port`` and ``interface`` (where given),
    whose WebSocket services also accept ``allowed_origins`` (the page's own origins move to the
    new port with it), and whose relative paths (the workers' pythonpath, the static directory)
    are made absolute from ``cbdir``, for a node that runs from another directory."""
    config = copy.deepcopy(config)
    for worker in config["workers"]:
        options = worker.get("options", {})
        if cbdir is not None and "pythonpath" in options:
            options["pythonpath"] = [str((cbdir / path).resolve()) for path in options["pythonpath"]]
        for transport in worker.get("transports", []):
            endpoint = transport["endpoint"]
            old = endpoint["port"]
            if port is not None:
                endpoint["port"] = port
            if interface is not None:
                endpoint["interface"] = interface
            for service in _services(transport):
                if cbdir is not None and service.get("type") == "static":
                    service["directory"] = str((cbdir / service["directory"]).resolve())
                listed = service.get("options", {}).get("allowed_origins")
                if listed is not None:
                    listed[:] = [re.sub(rf":{old}$", f":{endpoint['port']}", origin) for origin in listed]
                    listed += [origin for origin in allowed_origins if origin not in listed]
    return config


def _services(transport: dict[str, Any]) -> list[dict[str, Any]]:
    """A transport's services: a web transport's paths, or a universal one's (web and RawSocket)."""
    return [
        *transport.get("paths", {}).values(),
        *transport.get("web", {}).get("paths", {}).values(),
        *([transport["rawsocket"]] if "rawsocket" in transport else []),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Configure the router for where it runs, in place.")
    parser.add_argument("config", type=Path, help="the config.json to change")
    parser.add_argument("--port", type=int, help="the port its transports listen on")
    parser.add_argument("--interface", help="the interface its transports listen on (0.0.0.0: all)")
    parser.add_argument(
        "--origins", default="", help="browser origins to accept besides the page's own, comma-separated"
    )
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text())
    changed = configure(
        config, port=args.port, interface=args.interface, allowed_origins=origins(args.origins)
    )
    args.config.write_text(json.dumps(changed, indent=2) + "\n")


if __name__ == "__main__":
    main()
