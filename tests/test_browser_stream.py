"""The live pages in a real Chromium: events arrive without reload, filters, toasts, replay.

Embedded mode (in-process bus, SQLite) behind gunicorn's gevent worker; events
enter through the ingest API, as a producer's would.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from .browser import DROP_CONNECTION, RECONNECT, PageProblems, open_stream_page, sign_in
from .pipeline import EventLog, wait_for
from .streaming import embedded_site, ingest, send_admin_notice, signed_in_session

pytestmark = pytest.mark.browser

WAIT_MS = 10_000


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(tmp_path_factory.mktemp("browser-stream")) as site:
        yield site


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = PageProblems(page)
    sign_in(page, site["url"])
    yield page
    context.close()
    assert problems.messages == []


def event(topic="market.ticks", type_="tick", key="ACME", **payload):
    return {"topic": topic, "type": type_, "key": key, "payload": payload}


def rows(page):
    return page.locator("#event-list .event-row")


def test_live_page_shows_events_as_they_arrive_newest_first(page, site):
    open_stream_page(page, site["url"], "/live", "market.ticks", "system.metrics")
    expect(page.locator("#conn-state")).to_have_text(re.compile("Connected"))
    expect(page.locator("#transport")).to_have_text("Transport: websocket")
    ingest(site["url"], site["token"], [event(price=1.5), event(key="GLOBX", price=2.5)])
    expect(rows(page)).to_have_count(2)
    expect(rows(page).first).to_contain_text("GLOBX")
    expect(rows(page).first).to_contain_text('"price":2.5')
    expect(rows(page).last).to_contain_text("market.ticks")
    expect(page.locator("#event-count")).to_have_text("2")
    expect(page.locator("#stat-received")).to_have_text("2")
    expect(page.locator("#event-empty")).to_be_hidden()


def test_topic_and_type_filters_change_what_the_page_receives(page, site):
    open_stream_page(page, site["url"], "/live", "market.ticks", "system.metrics")
    page.click("label:has-text('system.metrics')")
    page.fill("#type-filter", "tick")
    expect(page).to_have_url(re.compile(r"type=tick"))
    expect(page.locator("#stat-subscribed")).not_to_contain_text("system.metrics")
    ingest(
        site["url"],
        site["token"],
        [
            event("system.metrics", "host", "host", cpu_pct=12.0),
            event(type_="trade", price=3),
            event(price=4, key="LAST"),
        ],
    )
    expect(rows(page).filter(has_text="LAST")).to_have_count(1)
    expect(rows(page)).to_have_count(1)
    assert page.locator("#event-list .event-item").first.get_attribute("data-type") == "tick"


def test_rows_open_to_their_json_copy_and_search_and_go_with_their_topic(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = PageProblems(page)
    sign_in(page, site["url"])
    open_stream_page(page, site["url"], "/live", "market.ticks", "system.metrics")
    expect(page.locator("label[for=topic-own]")).to_have_text("My notifications")
    long_note = "x" * 400
    ingest(
        site["url"],
        site["token"],
        [
            event(key="INSPECT", price=9.75, note=long_note),
            event("system.metrics", "host", "host", cpu_pct=7.0),
        ],
    )
    expect(rows(page)).to_have_count(2)
    row = page.locator("#event-list .event-item", has_text="INSPECT")
    row.locator("summary").click()
    json_box = row.locator(".event-json")
    expect(json_box).to_be_visible()
    expect(json_box).to_contain_text('"price": 9.75')
    expect(json_box).to_contain_text(long_note)  # whole, where the row is cut short
    row.get_by_role("button", name="Copy JSON").click()
    expect(row.get_by_role("button", name="Copied")).to_be_visible()
    copied = json.loads(page.evaluate("navigator.clipboard.readText()"))
    assert copied["key"] == "INSPECT" and copied["payload"]["note"] == long_note

    page.fill("#search-filter", "cpu_pct")
    expect(page.locator("#event-list .event-item:visible")).to_have_count(1)
    expect(page.locator("#event-count")).to_have_text("1")
    page.fill("#search-filter", "")
    expect(page.locator("#event-list .event-item:visible")).to_have_count(2)

    page.click("label:has-text('system.metrics')")  # turned off: its rows go at once
    expect(page.locator("#event-list .event-item")).to_have_count(1)
    expect(page.locator("#event-list .event-item")).to_have_attribute("data-topic", "market.ticks")
    context.close()
    assert problems.messages == []


def test_pause_holds_rows_and_clear_empties_the_list(page, site):
    open_stream_page(page, site["url"], "/live", "market.ticks")
    page.click("#pause-btn")
    ingest(site["url"], site["token"], [event(price=n) for n in range(3)])
    expect(page.locator("#paused-count")).to_have_text("3 new")
    expect(rows(page)).to_have_count(0)
    page.click("#pause-btn")
    expect(rows(page)).to_have_count(3)
    page.click("#clear-btn")
    expect(rows(page)).to_have_count(0)
    expect(page.locator("#event-empty")).to_be_visible()
    expect(page.locator("#stat-received")).to_have_text("3")


def test_forced_long_polling_still_delivers_events(page, site):
    open_stream_page(page, site["url"], "/live?transport=polling", "market.ticks")
    expect(page.locator("#transport")).to_have_text("Transport: polling")
    ingest(site["url"], site["token"], [event(key="POLL", price=7)])
    expect(rows(page).filter(has_text="POLL")).to_have_count(1)


def test_a_notice_shows_as_a_toast_and_in_the_dashboard_log(page, site):
    open_stream_page(page, site["url"], "/dashboard", "notices")
    notice = {"level": "warning", "title": "<b>Maintenance</b>", "body": "Back at 10:00"}
    admin = signed_in_session(site["url"], "ada@example.com")
    send_admin_notice(admin, site["url"], **notice, target="all")
    toast = page.locator("#notice-toasts .toast")
    expect(toast).to_be_visible()
    # Events are untrusted: markup in them shows as text.
    expect(toast).to_contain_text("<b>Maintenance</b>")
    expect(toast).to_contain_text("Back at 10:00")
    notices = page.locator("section.widget-kind-log", has_text="Notices")
    expect(notices.locator(".widget-log")).to_contain_text("<b>Maintenance</b>")


def test_the_starter_dashboard_follows_the_stream(page, site):
    open_stream_page(page, site["url"], "/dashboard", "market.ticks", "system.metrics")
    host = {"cpu_pct": 42.0, "mem_pct": 50.0, "mem_used_mb": 4096, "mem_total_mb": 8192}
    ingest(
        site["url"],
        site["token"],
        [
            event(key="TICKR", symbol="TICKR", price=101.5, change_pct=-0.5),
            event(key="TICKR", symbol="TICKR", price=102.25, change_pct=0.25),
            event("system.metrics", "host", "host", load=[0.5, 0.4, 0.3], **host),
        ],
    )
    row = page.locator("section.widget-kind-table tr[data-key=TICKR]")
    expect(row.locator(".widget-cell-value")).to_have_text("102.25")
    memory = page.locator("section.widget-kind-number", has_text="Memory in use")
    expect(memory.locator(".widget-value")).to_have_text("50")
    chart = page.locator("section.widget-kind-chart .widget-chart")
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9][0-9]*$"))
    expect(chart.locator("canvas")).to_be_visible()


def test_after_a_dropped_connection_the_page_replays_what_it_missed(page, site):
    open_stream_page(page, site["url"], "/live", "market.ticks")
    ingest(site["url"], site["token"], [event(key="BEFORE", price=1)])
    expect(rows(page).filter(has_text="BEFORE")).to_have_count(1)

    page.evaluate(DROP_CONNECTION)
    expect(page.locator("#conn-state")).to_have_text(re.compile("Reconnecting"))
    expect(page.locator("#transport")).to_have_text("Transport: none")
    [away_id] = ingest(site["url"], site["token"], [event(key="AWAY", price=2)])
    stored = EventLog(site["db"])
    wait_for(lambda: away_id in {row[1] for row in stored.rows()}, 10, message="event stored")
    stored.close()
    page.evaluate(RECONNECT)

    expect(page.locator("#conn-state")).to_have_text(re.compile("Connected"))
    expect(rows(page).filter(has_text="AWAY")).to_have_count(1)
    expect(page.locator("#stat-replayed")).to_have_text("1")
    expect(rows(page)).to_have_count(2)
