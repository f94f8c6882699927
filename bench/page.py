"""The live tail page under load, in Chromium: frames drawn, input answered, documents counted.

`measure` opens the page the router serves on one query, with its field list open (three
fields unfolded, their top values and numbers redrawn each second) and its histogram, sends it
``rate`` matching documents/s for ``seconds`` (through Beater, from a thread of its own): log
lines with a level, service, status, duration and message. Meanwhile it:
- counts the animation frames the page draws;
- types into the query field every quarter of a second, and times each key, in the page, from
  the input event to the frame drawn after its handler;
- once the load stops, waits 5 s, then reads the page's count of documents.
Playwright's sync API runs in the calling thread (the bench calls it from a worker thread).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import TYPE_CHECKING

from playwright.sync_api import expect, sync_playwright
from twisted.internet import threads

from dev.stack import CHROMIUM, CHROMIUM_ARGS
from estrom.clients import post_blocking

if TYPE_CHECKING:
    from bench.run import Bench

# Frames drawn, and for each key pressed: from the input event's time stamp to the frame drawn
# after its handler ran (what the person sees), measured inside the page.
PROBES = """() => {
  window.benchFrames = 0;
  window.benchKeys = [];
  const tick = () => { window.benchFrames += 1; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  document.addEventListener("keydown", (event) => {
    requestAnimationFrame(() => window.benchKeys.push(performance.now() - event.timeStamp));
  });
}"""


def measure(page_url: str, beater_url: str, index: str, rate: int, seconds: float) -> dict:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            page.goto(f"{page_url}/?i={index}&q=user:page")
            tail = page.locator(".tail[data-subscribed]")
            expect(tail).to_have_count(1, timeout=30_000)
            tail.locator(".show-fields").click()  # the field list; the histogram is always on
            page.evaluate(PROBES)
            page.click("#query")
            # Senders side by side, as one alone would wait out each request's round trip.
            loads = [_Load(f"{beater_url}/api/v0.1/docs/{index}", rate / 8, seconds) for _ in range(8)]
            frames_before = page.evaluate("window.benchFrames")
            started = time.monotonic()
            for load in loads:
                load.start()
            while any(load.is_alive() for load in loads):
                page.keyboard.type("x")
                page.wait_for_timeout(250)
            elapsed = time.monotonic() - started
            frames = page.evaluate("window.benchFrames") - frames_before
            keys = [ms / 1000 for ms in page.evaluate("window.benchKeys")]
            page.wait_for_timeout(5000)
            counted = int(tail.locator(".count").inner_text())
            rows = tail.locator(".docs li").count()
            histogram = int(tail.locator(".histogram").get_attribute("data-total"))
            service = tail.locator('.field-list > li[data-field="service"] .field-count').inner_text()
        finally:
            browser.close()
    for load in loads:
        if load.error:
            raise load.error
    sent = sum(load.sent for load in loads)
    return {
        "offered_docs_per_s": rate,
        "sent": sent,
        "sent_per_s": sent / max(load.elapsed for load in loads),
        "frames_per_s": frames / elapsed,
        "keys": len(keys),
        "input_ms": {
            "p50": statistics.median(keys) * 1000,
            "p90": statistics.quantiles(keys, n=10)[8] * 1000,
            "max": max(keys) * 1000,
        },
        "counted": counted,
        "counted_share": counted / sent,
        "rows_on_page": rows,
        "histogram_total": histogram,
        "facet_service": service,
    }


LEVELS = ("info",) * 7 + ("warn",) * 2 + ("error",)


def _document(n: int) -> dict:
    """A log line matching ``user:page``: a level, a service, a status, a duration, a message."""
    return {
        "user": "page",
        "n": n,
        "level": LEVELS[n % len(LEVELS)],
        "service": ("api", "web", "db", "auth")[n % 4],
        "status": (200, 200, 200, 404, 500)[n % 5],
        "ms": n % 97,
        "msg": f"GET /items/{n % 1000}",
    }


class _Load(threading.Thread):
    """``rate`` documents/s matching ``user:page``, up to 500 per request, for ``seconds``."""

    def __init__(self, url: str, rate: float, seconds: float):
        super().__init__(daemon=True)
        self.url, self.rate, self.seconds = url, rate, seconds
        self.sent = 0
        self.elapsed = 0.0
        self.error: Exception | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            while (now := time.monotonic()) < started + self.seconds:
                due = min(500, int(self.rate * (now - started)) - self.sent)
                if due <= 0:
                    time.sleep(0.002)
                    continue
                answer = post_blocking(self.url, [_document(self.sent + n) for n in range(due)])
                if answer["published"] != due:
                    raise RuntimeError(f"{due} documents sent, {answer['published']} published")
                self.sent += due
        except Exception as e:  # noqa: BLE001 - reported by measure()
            self.error = e
        self.elapsed = time.monotonic() - started


async def phase(bench: Bench) -> None:
    """The page under load, measured in a thread (Playwright's sync API), into the results."""
    page_url = f"http://127.0.0.1:{bench.stack.ports.router}"
    figures = await threads.deferToThread(
        measure,
        page_url,
        bench.urls["estrom"],
        "bench-page",
        bench.args.page_rate,
        bench.args.seconds * 2,
    )
    bench.results["page"] = figures
    print(f"bench: page: {json.dumps(figures)}", flush=True)
