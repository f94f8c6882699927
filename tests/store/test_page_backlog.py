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


def test_the_field_list_starts_from_the_store_and_a_refined_query_with_its_last_n(stored, page, index):  # noqa: F811
    post(stored, index, [{"service": "api", "level": "error", "ms": 10, "n": n} for n in range(4)])
    post(stored, index, [{"service": "db", "level": "error", "ms": 30, "n": 4}])
    page.goto(page_url(stored))
    tail(page, index, "level:error")
    section = page.locator(".tail").first
    section.locator(".show-fields").click()
    service = section.locator('.field-list > li[data-field="service"]')
    # From estrom.summary: nothing has arrived live yet.
    expect(service.locator(".field-count")).to_have_text("5 · 100%")
    expect(service.locator(".values .n")).to_have_text(["4", "1"])
    ms = section.locator('.field-list > li[data-field="ms"]')
    ms.locator(".field-name").click()
    expect(ms.locator(".numbers")).to_have_text("min 10 · avg 14 · max 30")
    expect(section.locator(".count")).to_have_text("0")
    post(stored, index, {"service": "db", "level": "error", "ms": 50, "n": 5})
    expect(service.locator(".values .n")).to_have_text(["4", "2"])  # then live, each once
    expect(ms.locator(".numbers")).to_have_text("min 10 · avg 20 · max 50")
    expect(section.locator(".fields-since")).to_contain_text("6 documents since")

    # Filter for db: the refined query opens with its stored documents, then goes on live.
    service.locator(".value", has_text="db").click()
    page.locator("#value-menu .filter-for").click()
    refined = page.locator(".tail").nth(1)
    expect(refined).to_have_attribute("data-subscribed", "")
    expect(refined.locator(".docs li summary")).to_have_count(2)
    post(stored, index, [{"service": "db", "level": "error", "n": 6}, {"service": "api", "level": "error"}])
    expect(refined.locator(".docs li summary")).to_have_count(3)
    texts = refined.locator(".docs li summary").all_text_contents()
    assert ['"n":4' in texts[0], '"n":5' in texts[1], '"n":6' in texts[2]] == [True] * 3, texts
