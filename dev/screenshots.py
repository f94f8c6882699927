"""`make screenshots`: the pictures README and docs/ show, taken of the real stack.

Starts an engine, the router, a Beater with the store and a Tailor on ports of their own, sends
log lines (some stored before the page opens, the rest live), and takes:
- docs/page-fields.png: one query on the whole screen at 1280×800, its field list open, the
  histogram, why each row matched;
- docs/live-tail.png: two queries side by side, one document unfolded;
- docs/tail-terminal.png: `estrom tail --highlight` run on a terminal (a pty), its very bytes
  drawn by xterm.js (tests/js/node_modules) in Chromium.
"""

from __future__ import annotations

import os
import pty
import random
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from dev.stack import CHROMIUM, CHROMIUM_ARGS, ROOT, Ports, Stack
from estrom.clients import docs_url, post_blocking

DOCS = ROOT / "docs"
XTERM = ROOT / "tests" / "js" / "node_modules" / "@xterm" / "xterm"
INDEX = "events"
SERVICES = ("api", "checkout", "billing", "search")
MESSAGES = {
    "info": ["GET /api/items answered in {ms} ms", "user signed in", "cache warmed: 312 keys"],
    "warn": ["slow query on orders: {ms} ms", "retrying upstream (attempt 2)"],
    "error": ["upstream timeout after {ms} ms", "payment declined: card expired", "disk full on /var"],
}


def log_line(chance: random.Random) -> dict:
    level = chance.choices(["info", "warn", "error"], [7, 2, 1])[0]
    ms = chance.randrange(5, 3000)
    return {
        "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{chance.randrange(1000):03d}Z",
        "level": level,
        "service": chance.choice(SERVICES),
        "host": f"web-{chance.randrange(1, 6)}",
        "status": chance.choice([200, 200, 200, 404, 500, 503]),
        "ms": ms,
        "msg": chance.choice(MESSAGES[level]).format(ms=ms),
    }


def send(beater_url: str, seconds: float, rate: float, chance: random.Random) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        post_blocking(docs_url(beater_url, INDEX), [log_line(chance) for _ in range(max(1, int(rate / 5)))])
        time.sleep(0.2)


def terminal_bytes(tailor_url: str) -> bytes:
    """What `estrom tail --highlight -n 12` writes to a terminal of 118 columns."""
    estrom = str(Path(sys.executable).parent / "estrom")
    command = [estrom, "tail", "--url", tailor_url, "-i", INDEX, "msg:timeout OR level:error", "--highlight"]
    command += ["-n", "12", "--limit", "12"]
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "118", "LANG": "C.UTF-8"}
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        process.wait(timeout=30)
        os.close(controller)
    return b"$ estrom tail -i events 'msg:timeout OR level:error' --highlight -n 12\r\n" + out


TERMINAL_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<style>body { margin: 0; background: #1e1e1e; } #t { padding: 10px; }</style></head>
<body><div id="t"></div></body></html>"""


def main() -> None:
    workdir = ROOT / ".estrom" / "screenshots"
    shutil.rmtree(workdir, ignore_errors=True)
    stack = Stack(workdir, ports=Ports(engine=39200, router=38080, beater=38070, tailor=38090))
    chance = random.Random(24)
    try:
        stack.start_engine()
        stack.start_router()
        stack.start_beater(ESTROM_STORE="true")
        stack.start_tailor()
        send(stack.beater_url, 20, 40, chance)  # the store's history, before the page opens
        page_url = f"http://127.0.0.1:{stack.ports.router}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            query = "level:(error OR warn) OR msg:timeout"
            page.goto(f"{page_url}/?i={INDEX}&q={query}&c=service,host,status&why=1&one=0")
            tail = page.locator(".tail[data-subscribed]")
            expect(tail).to_have_count(1, timeout=30_000)
            page.locator("h1").click()
            page.keyboard.press("f")
            tail.locator('.field-list > li[data-field="status"] .field-name').click()
            live = threading.Thread(target=send, args=(stack.beater_url, 12, 25, chance))
            live.start()
            live.join()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(DOCS / "page-fields.png"))

            page.goto(f"{page_url}/?i={INDEX}&q=level:error&q=service:checkout")
            expect(page.locator(".tail[data-subscribed]")).to_have_count(2, timeout=30_000)
            live = threading.Thread(target=send, args=(stack.beater_url, 8, 25, chance))
            live.start()
            live.join()
            page.wait_for_timeout(1500)
            row = page.locator(".tail").nth(0).locator(".docs li[data-row]").nth(1)
            row.locator("summary").click()
            expect(row.locator("pre")).to_be_visible()
            page.screenshot(path=str(DOCS / "live-tail.png"))

            written = terminal_bytes(stack.tailor_url)
            terminal = browser.new_context(viewport={"width": 1000, "height": 330}).new_page()
            terminal.set_content(TERMINAL_PAGE)
            terminal.add_style_tag(path=str(XTERM / "css" / "xterm.css"))
            terminal.add_script_tag(path=str(XTERM / "lib" / "xterm.js"))
            terminal.evaluate(
                """(data) => new Promise((done) => {
                  const term = new window.Terminal({cols: 118, rows: 15, fontSize: 13, convertEol: false});
                  term.open(document.getElementById("t"));
                  term.write(new Uint8Array(data), done);
                })""",
                list(written),
            )
            terminal.wait_for_timeout(300)
            terminal.screenshot(path=str(DOCS / "tail-terminal.png"))
            browser.close()
    finally:
        stack.down()
    print("screenshots written: docs/page-fields.png, docs/live-tail.png, docs/tail-terminal.png")


if __name__ == "__main__":
    main()
