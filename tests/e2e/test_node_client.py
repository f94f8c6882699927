"""The interface works for WAMP clients we did not write: autobahn-js in Node.js receives the
same hits as an HTTP stream."""

from __future__ import annotations

import json
import shutil

import pytest_twisted
from twisted.internet import reactor

from dev.stack import ROOT
from estrom.clients import HttpStream, ProcessLines, post

SCRIPT = ROOT / "tests" / "js" / "subscribe.mjs"


@pytest_twisted.ensureDeferred
async def test_autobahn_js_in_node_receives_the_same_hits_as_the_http_stream(stack, index):
    stream = await HttpStream.open(stack.tailor_url, i=index, q="level:error")
    sid = await stream.wait_for_head()
    node = ProcessLines()
    argv = [shutil.which("node"), "--experimental-websocket", str(SCRIPT), stack.router_url, sid, "2"]
    reactor.spawnProcess(node, argv[0], argv, env=None, path=str(SCRIPT.parent))
    await node.wait_for(lambda: "subscribed" in node.lines or node.ended, what="node to subscribe")
    assert not node.ended, node.stderr.decode()

    await post(f"{stack.beater_url}/api/v0.1/docs/{index}", [{"level": "error", "n": 1}, {"level": "info"}])
    await post(f"{stack.beater_url}/api/v0.1/docs/{index}", {"level": "error", "n": 2})
    await node.wait_for(lambda: node.ended, what="node to receive 2 hits")
    assert node.status == 0, node.stderr.decode()

    from_node = [json.loads(line) for line in node.lines if line != "subscribed"]
    assert from_node == await stream.wait_for_hits(2)  # the very same hits, _id and all
    assert [hit["_source"]["n"] for hit in from_node] == [1, 2]
    stream.close()
