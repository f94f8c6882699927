"""The live tail page the router serves, in a real browser (Debian's Chromium, headless),
against the real router, Beater and engine."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from dev.stack import CHROMIUM, CHROMIUM_ARGS
from estrom.clients import docs_url, post_blocking
from tests.conftest import artifact

# The router, the page and the command do not depend on the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.screenshot(path=artifact(re.sub(r"[^\w.-]+", "-", request.node.name) + ".png"))
    context.close()
    assert errors == [], errors


def post(stack, index: str, documents) -> dict:
    return post_blocking(docs_url(stack.beater_url, index), documents)


def page_url(stack, query: str = "") -> str:
    return f"http://127.0.0.1:{stack.ports.router}/{query}"


def tail(page: Page, index: str, query: str):
    # On a busy machine the page may take more than Playwright's default 5 s to join the router
    # (CI saw "not connected to the router yet"): wait for that, then for the subscription.
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected", timeout=20_000)
    page.fill("#index", index)
    page.fill("#query", query)
    page.click("#new-tail button[type=submit]")
    section = page.locator(".tail[data-subscribed]").last
    expect(section).to_be_visible(timeout=20_000)
    return section


def test_page_tails_a_query_and_shows_matching_documents_as_they_arrive(stack, page, index):
    page.goto(page_url(stack))
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    section = tail(page, index, "level:error AND service:api")
    sid = section.get_attribute("data-sid")
    assert re.fullmatch(r"[0-9a-f]{16}", sid)

    post(
        stack,
        index,
        [{"level": "error", "service": "api", "msg": "first"}, {"level": "info", "service": "api"}],
    )
    post(stack, index, {"level": "error", "service": "api", "msg": "second"})
    docs = section.locator(".docs li")
    expect(docs).to_have_count(2)
    expect(section.locator(".count")).to_have_text("2")
    # A row reads: the time, the level, the service, then the message itself, not JSON. The ID
    # is the panel's, shown once in its header.
    expect(docs.nth(0).locator("summary .msg")).to_have_text("first")
    expect(docs.nth(0).locator("summary .level")).to_have_text("ERROR")
    expect(docs.nth(0).locator("summary .field")).to_have_text("api")
    expect(section.locator(".tail-id")).to_have_text(sid)
    expect(section.locator(".docs").get_by_text(sid)).to_have_count(0)
    expect(docs.nth(0).locator("summary time")).to_have_text(re.compile(r"\d\d:\d\d:\d\d\.\d{3}"))
    expect(section.locator(".rate")).not_to_have_text("0.0")  # documents per second, updated each second

    # Collapsible, pretty-printed: the whole hit, as estrom delivers it.
    docs.nth(1).locator("summary").click()
    shown = json.loads(docs.nth(1).locator("pre").inner_text())
    assert shown["_index"] == index and shown["_source"] == {
        "level": "error",
        "service": "api",
        "msg": "second",
    }

    # Newest on top reorders what is there and puts new documents first.
    section.locator(".order").click()
    post(stack, index, {"level": "error", "service": "api", "msg": "third"})
    expect(docs).to_have_count(3)
    expect(docs.nth(0).locator("summary .msg")).to_have_text("third")

    # The URL reopens the same view.
    assert f"i={index}" in page.url and "q=level%3Aerror+AND+service%3Aapi" in page.url


def test_invalid_query_shows_the_engines_reason_next_to_the_input(stack, page, index):
    page.goto(page_url(stack))
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    page.fill("#index", index)
    page.fill("#query", '{"match": {"msg": {"query": "x", "bogus": 1}}}')
    page.click("#new-tail button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("bogus")
    page.fill("#query", '{"script": {"script": "1"}}')
    page.click("#new-tail button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("query type 'script' is not allowed")
    expect(page.locator(".tail")).to_have_count(0)


def test_pause_keeps_what_arrives_and_resume_shows_it(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    section.locator(".pause").click()
    post(stack, index, [{"service": "api", "n": n} for n in range(3)])
    expect(section.locator(".buffered")).to_have_text("· 3 waiting")
    expect(section.locator(".docs li")).to_have_count(0)
    section.locator(".pause").click()
    expect(section.locator(".docs li")).to_have_count(3)
    expect(section.locator(".buffered")).to_be_hidden()

    section.locator(".clear").click()
    expect(section.locator(".docs li")).to_have_count(0)
    expect(section.locator(".count")).to_have_text("0")


def test_shared_url_reopens_several_queries_side_by_side(stack, page, index):
    page.goto(page_url(stack, f"?i={index}&q=service:api&q=level:error"))
    sections = page.locator(".tail[data-sid]")
    expect(sections).to_have_count(2)
    sid = sections.nth(1).get_attribute("data-sid")

    page.goto(page_url(stack, f"?s={sid}"))
    section = page.locator(".tail[data-sid]")
    expect(section).to_have_count(1)
    expect(section.locator(".tail-query")).to_have_text("level:error")
    expect(section.locator(".tail-index")).to_have_text(index)
    post(stack, index, {"level": "error"})
    expect(section.locator(".docs li")).to_have_count(1)


def test_page_reconnects_and_resubscribes_after_the_router_restarts(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    stack.stop("router")
    try:
        expect(page.locator("#connection")).to_have_attribute("data-state", "lost")
        expect(page.locator("#connection")).to_contain_text("reconnecting")
    finally:
        stack.start_router()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected", timeout=20_000)
    expect(section).to_have_attribute("data-subscribed", "", timeout=20_000)  # subscribed again
    expect(section.locator(".docs li.note")).to_contain_text("connection lost at")

    # Beater reconnects by itself too; then documents reach the page again.
    for _ in range(100):
        try:
            if post(stack, index, {"service": "api", "after": "restart"})["published"] == 1:
                break
        except OSError:  # 503 while Beater is not back
            pass
        page.wait_for_timeout(200)
    expect(section.locator(".docs li:not(.note)").first).to_contain_text('"after":"restart"')


def test_a_flood_is_counted_whole_and_drawn_at_a_readable_rate(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    sent = 0
    for _ in range(6):  # 3,000 documents in a few hundred milliseconds
        post(stack, index, [{"service": "api", "n": sent + n} for n in range(500)])
        sent += 500
    # Every document is counted as it arrives ...
    expect(section.locator(".count")).to_have_text(str(sent))
    # ... the rows drawn are the newest, at most a burst plus the rate since (not 3,000) ...
    expect(section.locator(".docs li").last).to_contain_text(f'"n":{sent - 1}')
    rows = section.locator(".docs li").count()
    assert 0 < rows < sent / 2, rows
    # ... and the page says how many it shows.
    shown = section.locator(".shown")
    expect(shown).to_be_visible()
    expect(shown).to_have_text(re.compile(rf"· showing \d+ of {sent}"))
    assert int(re.search(r"showing (\d+)", shown.inner_text()).group(1)) == rows

    # Below the rate, every document is drawn: once a second has passed since the last frame
    # drawn (the allowance is full again), a few more arrive one by one, and all show.
    page.wait_for_function("performance.now() - tails[0].lastFrame > 1000")
    for n in range(3):
        post(stack, index, {"service": "api", "n": sent + n, "late": True})
    expect(section.locator(".docs li").last).to_contain_text(f'"n":{sent + 2}')
    expect(section.locator(".docs li", has_text='"late":true')).to_have_count(3)


def test_without_a_store_the_page_says_what_a_lost_connection_missed(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    post(stack, index, {"service": "api", "n": 1})
    expect(section.locator(".docs li:not(.note)")).to_have_count(1)
    page.evaluate("connection.close()")
    expect(page.locator("#connection")).to_have_attribute("data-state", "lost")
    page.evaluate("connection.open()")
    expect(section.locator(".docs li.note", has_text="missing here")).to_have_count(1)
    # And "last N" asks for what is not kept: the form says so, and no tail opens.
    page.fill("#last", "5")
    page.click("#new-tail button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("ESTROM_STORE is off")
    expect(page.locator(".tail")).to_have_count(1)


def _engine_blocking(stack, method: str, path: str, body: dict) -> None:
    request = urllib.request.Request(
        stack.engine_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def test_a_query_taken_out_of_percolation_says_why_and_the_others_go_on(stack, page, index):
    # A regular expression on a field the source index does not map; the field then becomes a
    # number, which the percolator index follows when the next query is registered.
    _engine_blocking(stack, "PUT", f"/{index}", {"mappings": {"properties": {"g": {"type": "keyword"}}}})
    page.goto(page_url(stack))
    tail(page, index, '{"regexp": {"f": "ab.*"}}')
    _engine_blocking(stack, "PUT", f"/{index}/_mapping", {"properties": {"f": {"type": "long"}}})
    tail(page, index, "g:x")
    expect(page.locator(".tail[data-subscribed]")).to_have_count(2)
    broken, kept = page.locator(".tail").nth(0), page.locator(".tail").nth(1)
    assert post(stack, index, {"g": "x"})["published"] == 1
    expect(kept.locator(".docs li")).to_have_count(1)
    expect(broken.locator(".tail-error")).to_contain_text("taken out")
    expect(broken).not_to_have_attribute("data-subscribed", "")


def test_a_named_documents_resend_is_shown_once(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    lines = [{"index": {"_index": index, "_id": "order-1"}}, {"service": "api", "n": 1}]
    lines += [{"index": {"_index": index}}, {"service": "api", "n": 2}]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    for _ in range(2):  # the sender did not hear the answer, and sends it again
        request = urllib.request.Request(
            f"{stack.beater_url}/_bulk", body, {"Content-Type": "application/x-ndjson"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["errors"] is False
    post(stack, index, {"service": "api", "n": 3})
    expect(section.locator(".count")).to_have_text("4")  # the unnamed one twice, then n: 3
    docs = section.locator(".docs li summary")
    expect(docs).to_have_count(4)
    shown = [json.loads(text[text.index("{") :])["n"] for text in docs.all_text_contents()]
    assert sorted(shown) == [1, 2, 2, 3]


def test_a_row_shows_the_documents_own_time_and_its_whole_message(stack, page, index):
    page.set_viewport_size({"width": 700, "height": 800})  # a narrow window
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    message = "upstream timed out after 30 s while reading the answer of " + "the billing service " * 12
    post(
        stack,
        index,
        {
            "@timestamp": "2026-12-06T03:00:00.250Z",
            "level": "warn",
            "service": "api",
            "host": "h1",
            "msg": message,
        },
    )
    row = section.locator(".docs li summary").first
    expect(row.locator(".msg")).to_have_text(message.strip())
    expect(row.locator("time")).to_have_attribute("datetime", "2026-12-06T03:00:00.250Z")
    expect(row.locator(".field")).to_have_text(["api", "h1"])
    # Wrapped, not cut off: the message's box is no wider than the row.
    assert row.locator(".msg").bounding_box()["width"] <= row.bounding_box()["width"]
    assert row.locator(".msg").bounding_box()["height"] > 20


def test_the_histogram_counts_every_match_stacked_by_level(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    levels = ["error", "error", "warn", "info", "debug"] * 40
    post(stack, index, [{"service": "api", "level": level, "n": n} for n, level in enumerate(levels)])
    expect(section.locator(".count")).to_have_text("200")
    histogram = section.locator(".histogram")
    expect(histogram).to_have_attribute("data-total", "200")  # every one, though fewer rows are drawn
    for kind in ("error", "warn", "other"):
        expect(histogram.locator(f"rect.{kind}")).not_to_have_count(0)
    assert "200 matches" in histogram.get_attribute("aria-label")


def test_keys_focus_the_query_pause_move_and_unfold(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    post(stack, index, [{"service": "api", "msg": f"line {n}"} for n in range(3)])
    rows = section.locator(".docs li")
    expect(rows).to_have_count(3)
    page.locator("h1").click()  # away from the form's inputs
    page.keyboard.press("/")
    expect(page.locator("#query")).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(rows.nth(1)).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("k")
    expect(rows.nth(0)).to_have_class(re.compile(r"\bselected\b"))
    page.keyboard.press("Enter")
    expect(rows.nth(0).locator("pre")).to_contain_text('"msg": "line 0"')
    page.keyboard.press(" ")
    expect(section).to_have_attribute("data-paused", "")
    post(stack, index, {"service": "api", "msg": "while paused"})
    expect(section.locator(".buffered")).to_have_text("· 1 waiting")
    page.keyboard.press(" ")
    expect(rows).to_have_count(4)


def _field(section, name: str):
    return section.locator(f'.field-list > li[data-field="{name}"]')


def _values(field) -> list[tuple[str, str, str]]:
    """A field's top values as shown: (value, count, share)."""
    return [
        (
            item.locator(".value").inner_text(),
            item.locator(".n").inner_text(),
            item.locator(".share").inner_text(),
        )
        for item in field.locator(".values li").all()
    ]


def test_the_field_list_counts_what_was_sent_and_filter_for_opens_the_refined_query(stack, page, index):
    page.goto(page_url(stack))
    tail(page, index, "level:error")
    section = page.locator(".tail").first
    sent = [{"level": "error", "service": "api", "status": 500 + n % 3} for n in range(7)]
    sent += [{"level": "error", "service": "web gateway", "status": 502}] * 3
    post(stack, index, sent + [{"level": "info", "service": "api"}])
    expect(section.locator(".count")).to_have_text("10")
    page.locator("h1").click()
    page.keyboard.press("f")  # the field list
    expect(section.locator(".fields")).to_be_visible()
    service = _field(section, "service")
    expect(service.locator(".field-count")).to_have_text("10 · 100%")
    expect(service.locator(".values li")).to_have_count(2)
    assert _values(service) == [("api", "7", "70%"), ("web gateway", "3", "30%")]
    status = _field(section, "status")
    status.locator(".field-name").click()  # unfolded: top values and the numbers
    expect(status.locator(".numbers")).to_have_text("min 500 · avg 501.2 · max 502")
    assert _values(status)[0] == ("502", "5", "50%")

    # "filter for" opens the refined query beside this one: its stream gets exactly its matches.
    service.locator(".value", has_text="web gateway").click()
    page.locator("#value-menu .filter-for").click()
    refined = page.locator(".tail[data-subscribed]").nth(1)
    expect(refined.locator(".tail-query")).to_have_text('(level:error) AND service:"web gateway"')
    expect(page.locator(".tail")).to_have_count(2)
    later = [
        {"level": "error", "service": "web gateway", "msg": "a"},
        {"level": "error", "service": "web", "msg": "b"},
        {"level": "error", "service": "api", "msg": "c"},
        {"level": "info", "service": "web gateway", "msg": "d"},
    ]
    post(stack, index, later)
    expect(section.locator(".count")).to_have_text("13")
    expect(refined.locator(".count")).to_have_text("1")
    expect(refined.locator(".docs li .msg")).to_have_text(["a"])
    assert "service%3A%22web+gateway%22" in page.url

    # "filter out", in this panel: the refined query takes its place.
    page.locator("h1").click()
    refined.locator(".show-fields").click()
    _field(refined, "service").locator(".value").first.click()
    page.locator("#value-menu .value-menu-here").check()
    page.locator("#value-menu .filter-out").click()
    expect(page.locator(".tail")).to_have_count(2)
    replaced = page.locator(".tail").nth(1)
    expect(replaced.locator(".tail-query")).to_have_text(
        '((level:error) AND service:"web gateway") AND NOT service:"web gateway"'
    )
    expect(replaced).to_have_attribute("data-subscribed", "")
    post(stack, index, {"level": "error", "service": "web gateway", "msg": "e"})
    expect(section.locator(".count")).to_have_text("14")
    expect(replaced.locator(".count")).to_have_text("0")


def test_filter_on_a_query_in_json_is_its_bool(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, '{"term": {"level": "error"}}')
    post(stack, index, [{"level": "error", "service": "api"}, {"level": "error", "service": "db"}])
    expect(section.locator(".count")).to_have_text("2")
    section.locator(".show-fields").click()
    _field(section, "service").locator(".value", has_text="db").click()
    page.locator("#value-menu .filter-out").click()
    refined = page.locator(".tail[data-subscribed]").nth(1)
    expect(refined.locator(".tail-query")).to_have_text(
        json.dumps(
            {
                "bool": {
                    "must": [{"term": {"level": "error"}}],
                    "must_not": [{"match_phrase": {"service": "db"}}],
                }
            },
            separators=(",", ":"),
        )
    )
    post(
        stack,
        index,
        [{"level": "error", "service": "api", "msg": "kept"}, {"level": "error", "service": "db"}],
    )
    expect(refined.locator(".docs li .msg")).to_have_text(["kept"])


def test_columns_are_chosen_from_the_field_list_and_kept_in_the_url(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    post(stack, index, {"service": "api", "host": "h1", "status": 503, "msg": "slow"})
    row = section.locator(".docs li summary").first
    expect(row.locator(".field")).to_have_text(["api", "h1"])
    section.locator(".show-fields").click()
    _field(section, "host").locator(".column-choice input").uncheck()
    _field(section, "status").locator(".column-choice input").check()
    expect(row.locator(".field")).to_have_text(["api", "503"])  # the rows drawn again
    assert "c=service%2Cstatus" in page.url
    page.reload()
    section = page.locator(".tail[data-subscribed]")
    expect(section).to_be_visible()
    post(stack, index, {"service": "api", "host": "h2", "status": 200, "msg": "fine"})
    expect(section.locator(".docs li summary .field")).to_have_text(["api", "200"])
    expect(section.locator(".docs li summary .msg")).to_have_text("fine")


def test_the_histogram_shows_15_minutes_by_10_seconds_and_the_rate_now(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    post(stack, index, [{"service": "api", "level": "error"}] * 30 + [{"service": "api"}] * 12)
    expect(section.locator(".count")).to_have_text("42")
    histogram = section.locator(".histogram")
    expect(histogram).to_have_attribute("data-total", "42")
    expect(section.locator(".now")).not_to_have_text("0.0/s now")
    section.locator(".window").click()
    expect(section.locator(".window")).to_have_text("15 min")
    expect(histogram).to_have_attribute("viewBox", "0 0 90 40")
    expect(histogram).to_have_attribute("data-total", "42")  # the buckets add up to the count
    assert "in 10 seconds" in histogram.get_attribute("aria-label")
    assert "h=15m" in page.url
    page.reload()
    expect(page.locator(".tail .window")).to_have_text("15 min")


def test_one_query_takes_the_whole_screen_and_escape_brings_the_others_back(stack, page, index):
    page.goto(page_url(stack, f"?i={index}&q=service:api&q=service:db"))
    expect(page.locator(".tail[data-subscribed]")).to_have_count(2)
    first, second = page.locator(".tail").nth(0), page.locator(".tail").nth(1)
    second.locator(".span").click()
    expect(first).to_be_hidden()
    assert second.bounding_box()["width"] > 1200
    assert "one=1" in page.url
    page.locator("h1").click()
    page.keyboard.press("f")
    expect(second.locator(".fields")).to_be_visible()
    page.keyboard.press("Escape")
    expect(first).to_be_visible()
    assert "one=" not in page.url


# WCAG 2.1 AA: text at least 4.5:1 against what is behind it (3:1 when large), and every control
# with a name a screen reader can say.
CONTRAST = """() => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = (el) => {
    for (let at = el; at; at = at.parentElement) {
      const [r, g, b, a = 1] = rgb(getComputedStyle(at).backgroundColor);
      if (a > 0.5) return [r, g, b];
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!el.checkVisibility() || ![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const style = getComputedStyle(el);
    const [l1, l2] = [lum(rgb(style.color)), lum(behind(el))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.66 && style.fontWeight >= 700);
    if (ratio < (large ? 3 : 4.5)) low.push(`${el.className || el.tagName}: ${ratio.toFixed(2)} "${el.textContent.trim().slice(0, 30)}"`);
  }
  const unnamed = [];
  for (const el of document.querySelectorAll("button, input, select")) {
    if (!el.checkVisibility()) continue;
    const named = el.getAttribute("aria-label") || el.labels?.length || (el.tagName === "BUTTON" && el.textContent.trim());
    if (!named) unnamed.push(el.outerHTML.slice(0, 80));
  }
  return { low, unnamed };
}"""


@pytest.mark.parametrize("width, height", [(1280, 800), (420, 800)])
def test_text_meets_wcag_aa_contrast_and_controls_have_labels(stack, page, index, width, height):
    page.set_viewport_size({"width": width, "height": height})
    page.goto(page_url(stack))
    section = tail(page, index, "service:api")
    post(
        stack,
        index,
        [
            {"service": "api", "level": level, "status": 200, "msg": f"{level} line"}
            for level in ("error", "warn", "info")
        ],
    )
    expect(section.locator(".count")).to_have_text("3")
    section.locator(".show-fields").click()
    _field(section, "service").locator(".value").first.click()
    expect(page.locator("#value-menu")).to_be_visible()
    found = page.evaluate(CONTRAST)
    assert found == {"low": [], "unnamed": []}, found
    # Nothing wider than the window: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_why_it_matched_marks_the_engines_highlights_in_the_row_and_the_unfolded_hit(stack, page, index):
    page.goto(page_url(stack))
    section = tail(page, index, "msg:timeout OR service:api OR level:warn")
    post(stack, index, {"service": "web", "msg": "<b>before</b> the switch: timeout", "n": 0})
    expect(section.locator(".count")).to_have_text("1")
    plain_id = section.get_attribute("data-sid")
    section.locator(".marks").click()  # its own ID, from now on
    expect(section.locator(".marks")).to_have_attribute("aria-pressed", "true")
    expect(section).not_to_have_attribute("data-sid", plain_id)
    assert "why=1" in page.url
    post(
        stack,
        index,
        [
            {"service": "api", "host": "h1", "level": "warn", "msg": "upstream timeout after 30 s", "n": 1},
            {"service": "web", "msg": "nothing", "n": 2},
            {"service": "api", "msg": "a <b>timeout</b> & more", "n": 3},
        ],
    )
    expect(section.locator(".count")).to_have_text("3")  # each once, across the switch
    rows = section.locator(".docs li[data-row]")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("mark")).to_have_count(0)  # came before highlights were asked
    expect(rows.nth(1).locator(".msg mark")).to_have_text(["timeout"])
    expect(rows.nth(1).locator(".field mark")).to_have_text(["api"])  # service:api matched it too
    expect(rows.nth(1).locator(".level mark")).to_have_text(["WARN"])
    # The document's own markup is text, never a mark.
    expect(rows.nth(2).locator(".msg")).to_have_text("a <b>timeout</b> & more")
    expect(rows.nth(2).locator(".msg mark")).to_have_text(["timeout"])
    rows.nth(1).locator("summary").click()
    pre = rows.nth(1).locator("pre")
    expect(pre.locator("mark")).to_have_text(["api", "warn", "timeout"])
    assert json.loads(pre.inner_text())["_source"]["msg"] == "upstream timeout after 30 s"
    page.reload()  # kept in the URL
    expect(page.locator(".tail .marks")).to_have_attribute("aria-pressed", "true")
