"""A router whose embedded component fails to start stops, saying which (router/embedded.py):
crossbar alone would log the error and serve without it."""

from __future__ import annotations

import dataclasses

import pytest

from dev.stack import Stack
from estrom.clients import TIMEOUT

# The router does not talk to the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


@pytest.mark.parametrize(
    ("component", "extra"),
    [
        ("readers.SlowReaders", {"max_pending_bytes": "lots"}),  # not a number
        ("authorizer.Authorizer", {"principals": ["not", "a", "table"]}),
    ],
    ids=["slow-readers", "authorizer"],
)
def test_a_router_whose_component_fails_to_start_stops_and_says_which(stack, component, extra):
    router = Stack(
        stack.workdir / f"broken-{component}",
        ports=dataclasses.replace(stack.ports, router=stack.ports.router + 3),
        engine_url=stack.engine_url,
    )
    config = router.router_config()
    for worker in config["workers"]:
        for embedded in worker.get("components", []):
            if embedded["classname"] == component:
                embedded["extra"] = extra
    try:
        try:
            router.start_router(config=config)
        except RuntimeError:
            pass  # it may stop before it answers at all
        process = router.processes["router"]
        assert process.wait(TIMEOUT) != 0
        log = router.log_path("router").read_text()
        name = component.split(".")[1]
        assert f"the router's component {name} failed to start: stopping the router" in log
    finally:
        router.down()
