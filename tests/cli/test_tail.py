"""`estrom tail`, run as a real process against the real system."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from estrom import api
from estrom.clients import (
    ProcessLines,
    docs_url,
    eventually,
    post,
    subscribers,
    until_subscribed,
    wamp_session,
)

# The router, the page and the command do not depend on the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)

ESTROM = str(Path(sys.executable).parent / "estrom")


def run(*args: str) -> tuple[ProcessLines, object]:
    lines = ProcessLines()
    process = reactor.spawnProcess(lines, ESTROM, [ESTROM, "tail", *args], env=None)
    return lines, process


@pytest_twisted.ensureDeferred
async def test_prints_each_matching_document_as_a_compact_json_line(stack, index):
    query = "level:error AND service:api"
    out, _ = run("--url", stack.tailor_url, "-i", index, query, "--limit", "2")
    await until_subscribed(stack, index, query)
    await post(docs_url(stack.beater_url, index), {"level": "error", "service": "api", "n": 1})
    await post(
        docs_url(stack.beater_url, index),
        [{"level": "info", "service": "api"}, {"level": "error", "service": "api", "n": 2}],
    )
    await out.wait_for(lambda: out.ended, what="estrom tail to stop after --limit 2")
    assert out.status == 0, out.stderr
    assert out.lines == ['{"level":"error","service":"api","n":1}', '{"level":"error","service":"api","n":2}']
    assert all(json.loads(line)["level"] == "error" for line in out.lines)


async def _deliver_until_printed(stack, index, out: ProcessLines, document: dict) -> None:
    """Post ``document`` until the command prints it (it may not have subscribed yet): for a
    command without --limit, which more copies do not stop early."""

    async def printed():
        if out.ended:
            raise AssertionError(f"estrom tail ended: {out.status} {out.stderr!r}")
        if any(f'"n":{document["n"]}' in line for line in out.lines):
            return True
        await post(docs_url(stack.beater_url, index), document)
        return False

    await eventually(printed, what="estrom tail to print a document")


@pytest_twisted.ensureDeferred
async def test_format_template_and_json_output(stack, index):
    template = "{@timestamp} [{level}] {kubernetes.pod} {msg} {missing}"
    formatted, _ = run(
        "--url", stack.tailor_url, "-i", index, "service:api", "--format", template, "--limit", "1"
    )
    raw, _ = run("--url", stack.tailor_url, "-i", index, "service:api", "--json", "--limit", "1")
    document = {
        "@timestamp": "2026-11-28T03:00:00Z",
        "level": "warn",
        "service": "api",
        "msg": "slow",
        "kubernetes": {"pod": "web-1"},
    }

    async def both_printed():
        if not (formatted.ended and raw.ended):
            await post(docs_url(stack.beater_url, index), document)
        return formatted.ended and raw.ended

    await eventually(both_printed, what="both commands to print the document")
    assert (formatted.status, raw.status) == (0, 0), (formatted.stderr, raw.stderr)
    assert formatted.lines == ["2026-11-28T03:00:00Z [warn] web-1 slow -"]
    hit = json.loads(raw.lines[0])
    assert hit["_index"] == index and hit["_source"] == document and hit["_id"]


@pytest_twisted.ensureDeferred
async def test_colour_by_level(stack, index):
    out, _ = run("--url", stack.tailor_url, "-i", index, "service:api", "--color", "always", "--limit", "2")
    await until_subscribed(stack, index, "service:api")
    await post(docs_url(stack.beater_url, index), {"service": "api", "level": "error", "n": 1})
    await post(docs_url(stack.beater_url, index), {"service": "api", "level": "info", "n": 2})
    await out.wait_for(lambda: out.ended, what="two lines")
    assert out.lines[0].startswith("\033[31m") and out.lines[0].endswith("\033[0m")
    assert out.lines[-1] == '{"service":"api","level":"info","n":2}'  # no colour for info


@pytest_twisted.ensureDeferred
async def test_ctrl_c_exits_cleanly(stack, index):
    out, process = run("--url", stack.tailor_url, "-i", index, "service:api")
    await _deliver_until_printed(stack, index, out, {"service": "api", "n": 1})
    process.signalProcess(signal.SIGINT)
    await out.wait_for(lambda: out.ended, what="estrom tail to exit")
    assert out.status == 0
    assert b"Traceback" not in out.stderr


@pytest_twisted.ensureDeferred
async def test_a_refused_query_is_an_error_not_a_retry(stack, index):
    out, _ = run("--url", stack.tailor_url, "-i", index, "level:(error OR")
    await out.wait_for(lambda: out.ended, what="estrom tail to give up")
    assert out.status == 2
    assert b"cannot parse the query string" in out.stderr


@pytest_twisted.ensureDeferred
async def test_reconnects_to_the_same_subscription_and_says_so(stack, index):
    port = stack.ports.tailor + 2
    url = stack.start_tailor("tailor-cli", port=port)
    out, process = run("--url", url, "-i", index, "service:api")
    try:
        await _deliver_until_printed(stack, index, out, {"service": "api", "n": 1})
        stack.stop("tailor-cli")
        await out.wait_for(lambda: b"reconnecting" in out.stderr, what="a word on stderr")
        stack.start_tailor("tailor-cli", port=port)
        await _deliver_until_printed(stack, index, out, {"service": "api", "n": 2})
        assert not out.ended
        # Without a store it resumes after its last hit all the same, and Tailor says a gap.
        assert b"resuming after the last document shown" in out.stderr
        assert b"documents sent while disconnected are missing here" in out.stderr
    finally:
        process.signalProcess(signal.SIGINT)
        stack.stop("tailor-cli")
    await out.wait_for(lambda: out.ended, what="estrom tail to exit")
    assert out.status == 0


@pytest_twisted.ensureDeferred
async def test_estrom_tail_without_a_store_refuses_n(stack, index):
    out, _ = run("--url", stack.tailor_url, "-i", index, "service:api", "-n", "3")
    await out.wait_for(lambda: out.ended, what="estrom tail to give up")
    assert out.status == 2 and b"ESTROM_STORE" in out.stderr


@pytest_twisted.ensureDeferred
async def test_on_a_terminal_a_document_reads_as_time_level_service_host_and_message(stack, index):
    query = "service:api"
    out = ProcessLines()
    env = {"TERM": "xterm-256color", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    args = [ESTROM, "tail", "--url", stack.tailor_url, "-i", index, query, "--limit", "1"]
    reactor.spawnProcess(out, ESTROM, args, env=env, usePTY=True)
    await until_subscribed(stack, index, query)
    document = {
        "@timestamp": "2026-12-06T03:00:00Z",
        "level": "error",
        "service": "api",
        "host": "h1",
        "msg": "disk full",
    }
    await post(docs_url(stack.beater_url, index), document)
    await out.wait_for(lambda: out.ended, what="estrom tail to stop after --limit 1")
    assert out.status == 0, out.stderr
    # The level in red, the rest as the document says it; a terminal's line ends in CR LF.
    assert [line.rstrip("\r") for line in out.lines] == [
        "2026-12-06T03:00:00Z \x1b[31mERROR\x1b[0m api h1 disk full"
    ]


@pytest_twisted.ensureDeferred
async def test_highlight_marks_why_a_document_matched_on_a_terminal(stack, index):
    query = "msg:disk OR service:api"
    out = ProcessLines()
    env = {"TERM": "xterm-256color", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    args = [ESTROM, "tail", "--url", stack.tailor_url, "-i", index, query, "--limit", "1", "--highlight"]
    reactor.spawnProcess(out, ESTROM, args, env=env, usePTY=True)

    async def marked_id_listened() -> bool:
        client = await wamp_session(stack.router_url)
        meta = await wamp_session(stack.router_url, {"ticket": {"authid": "beater", "ticket": stack.secret}})
        try:
            return bool(
                await subscribers(meta, await client.call(api.REGISTER, index, query, {"highlight": True}))
            )
        finally:
            client.leave()
            meta.leave()

    await eventually(marked_id_listened, what="estrom tail on the query's ID for highlights")
    document = {"@timestamp": "2026-12-06T03:00:00Z", "service": "api", "host": "h1", "msg": "disk full"}
    await post(docs_url(stack.beater_url, index), document)
    await out.wait_for(lambda: out.ended, what="estrom tail to stop after --limit 1")
    assert out.status == 0, out.stderr
    assert [line.rstrip("\r") for line in out.lines] == [
        "2026-12-06T03:00:00Z \x1b[7mapi\x1b[27m h1 \x1b[7mdisk\x1b[27m full"
    ]
