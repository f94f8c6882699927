"""The page with the store: the last N stored documents first, and resume after a lost
connection, in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.router.test_page import browser, page, page_url, post, tail  # noqa: F401 - fixtures

pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)  # the page: one engine


def test_page_shows_the_last_n_then_live_and_resumes_after_a_lost_connection(stored, page, index):  # noqa: F811
    post(stored, index, [{"service": "api", "n": n} for n in range(5)])
    page.goto(page_url(stored))
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    page.fill("#index", index)
    page.fill("#query", "service:api")
    page.fill("#last", "3")
    page.click("#new-tail button[type=submit]")
    section = page.locator(".tail[data-subscribed]").last
    rows = section.locator(".docs li:not(.note)")
    expect(rows).to_have_count(3)
    for row, n in zip(rows.all(), [2, 3, 4], strict=True):
        expect(row.locator("summary")).to_contain_text(f'"n":{n}')
    post(stored, index, {"service": "api", "n": 5})
    expect(rows).to_have_count(4)

    page.evaluate("connection.close()")  # as when a laptop sleeps: the router stays up
    expect(page.locator("#connection")).to_have_attribute("data-state", "lost")
    post(stored, index, [{"service": "api", "n": n} for n in (6, 7)])
    page.evaluate("connection.open()")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    post(stored, index, {"service": "api", "n": 8})
    expect(rows).to_have_count(7)
    for row, n in zip(rows.all(), range(2, 9), strict=True):
        expect(row.locator("summary")).to_contain_text(f'"n":{n}')
    expect(section.locator(".docs li.note")).to_contain_text("connection lost at")
    expect(section.locator(".docs li.note", has_text="missing")).to_have_count(0)


def test_the_histogram_starts_from_the_stored_matches_and_counts_each_live_one_once(stored, page, index):  # noqa: F811
    post(stored, index, [{"service": "api", "level": "error"}] * 2 + [{"service": "api", "level": "info"}])
    page.goto(page_url(stored))
    section = tail(page, index, "service:api")
    histogram = section.locator(".histogram")
    expect(histogram).to_have_attribute("data-total", "3")  # from estrom.summary: nothing shown yet
    expect(section.locator(".count")).to_have_text("0")
    post(stored, index, [{"service": "api", "level": "warn"}, {"service": "api", "level": "error"}])
    expect(section.locator(".count")).to_have_text("2")
    expect(histogram).to_have_attribute("data-total", "5")
    expect(histogram.locator("rect.error")).not_to_have_count(0)
    expect(histogram.locator("rect.warn")).not_to_have_count(0)
