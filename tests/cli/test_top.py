"""`estrom top` against the real system: the command in a real terminal (a pty) and in a pipe."""

from __future__ import annotations

import fcntl
import json
import struct
import sys
import termios
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from estrom.clients import ProcessLines, docs_url, eventually, post, until_subscribed

ESTROM = str(Path(sys.executable).parent / "estrom")


class Terminal(ProcessLines):
    """What a command writes to its terminal, whole."""

    def __init__(self) -> None:
        super().__init__()
        self.screen = b""

    def outReceived(self, data: bytes) -> None:
        self.screen += data
        super().outReceived(data)


QUERY = "level:error"


def _top(stack, index, out: ProcessLines, *more: str, terminal: bool = False):
    """``estrom top`` of QUERY by service, in a terminal of 120 x 40 or a pipe."""
    args = [ESTROM, "top", "--url", stack.tailor_url, "-i", index, QUERY, "--by", "service", *more]
    if not terminal:
        return reactor.spawnProcess(out, ESTROM, args, env=None)
    env = {"TERM": "xterm-256color", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    process = reactor.spawnProcess(out, ESTROM, args, env=env, usePTY=True)
    fcntl.ioctl(process.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    return process


@pytest.mark.parametrize("stack", ["opensearch"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_top_in_a_terminal_draws_the_counts_and_quits_on_q(stack, index):
    terminal = Terminal()
    process = _top(stack, index, terminal, "--every", "200ms", terminal=True)
    try:
        await until_subscribed(stack, index, QUERY)
        await post(docs_url(stack.beater_url, index), [{"level": "error", "service": "api"}] * 3)
        # A frame reaches the terminal in pieces: wait for the lines after the total too.
        await terminal.wait_for(
            lambda: b"total 3" in terminal.screen and b"100.0%" in terminal.screen.split(b"total 3", 1)[1],
            what="the screen to show the total, then the top value's share",
        )
        assert b"api" in terminal.screen.split(b"total 3", 1)[1]
        assert b"\x1b[?1049h" in terminal.screen  # the alternate screen
        process.write(b"q")
        await terminal.wait_for(lambda: terminal.ended, what="estrom top to quit on q")
        assert terminal.status == 0
        assert b"\x1b[?1049l" in terminal.screen  # and back
    finally:
        if not terminal.ended:
            process.signalProcess("KILL")


@pytest.mark.parametrize("stack", ["opensearch"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_top_prints_frames_as_ndjson_and_plain_lines_in_a_pipe(stack, index):
    outs, processes = {}, []
    for shape in ("--json", None):
        outs[shape] = out = ProcessLines()
        processes.append(_top(stack, index, out, "--every", "100ms", *([shape] if shape else [])))
    try:
        # A frame printed: that stream is open, so subscribed.
        for out in outs.values():
            await out.wait_for(lambda out=out: bool(out.lines) or out.ended, what="a first frame")
        await post(docs_url(stack.beater_url, index), [{"level": "error", "service": "api"}] * 2)

        def counted(out: ProcessLines, shape: str | None) -> bool:
            if shape:
                return any(json.loads(line)["count"] == 2 for line in out.lines)
            return any(line.startswith("count=2 ") and "service: api=2" in line for line in out.lines)

        for shape, out in outs.items():
            await eventually(lambda out=out, shape=shape: counted(out, shape), what=f"estrom top {shape}")
            out.transport.signalProcess("INT")
            await out.wait_for(lambda out=out: out.ended, what="estrom top to end on Ctrl-C")
            assert out.status == 0, out.stderr
    finally:
        for out, process in zip(outs.values(), processes, strict=True):
            if not out.ended:
                process.signalProcess("KILL")
