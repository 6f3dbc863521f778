"""One clock: every time on every page in the user's time zone, UTC on hover.

Chromium runs in New York; the user first leaves the zone to the browser, then
chooses Tokyo in Settings.  A notice's time on the notices page and its toast,
a row on the live page, the admin's user list and a dashboard widget all follow,
24-hour, and each carries the exact UTC time in its title.
"""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from .browser import PageProblems, open_stream_page, sign_in
from .streaming import embedded_site, ingest, send_admin_notice, signed_in_session

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(tmp_path_factory.mktemp("clock")) as site:
        yield site


def shown_in(zone: str, iso: str, pattern: str) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo(zone)).strftime(pattern)


def utc_title(iso: str) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_time(node, zone: str, pattern: str) -> None:
    iso = node.get_attribute("datetime")
    assert shown_in(zone, iso, pattern) in node.inner_text()
    assert node.get_attribute("title") == utc_title(iso)


def test_times_follow_the_chosen_zone_with_utc_on_hover(browser, site):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="America/New_York", locale="en-GB"
    )
    page = context.new_page()
    problems = PageProblems(page)
    sign_in(page, site["url"], "ada@example.com")
    admin = signed_in_session(site["url"], "ada@example.com")
    send_admin_notice(admin, site["url"], level="info", title="Clock check", body="", target="all")

    # No zone chosen: the browser's (New York).
    page.goto(f"{site['url']}/notices")
    check_time(page.locator("#notices-page-list time").first, "America/New_York", "%H:%M")

    page.goto(f"{site['url']}/settings/")
    page.select_option("#time_zone", "Asia/Tokyo")
    page.click("form[action$='/preferences'] button[type=submit]")
    expect(page.get_by_text("Preferences saved.")).to_be_visible()

    page.goto(f"{site['url']}/notices")
    check_time(page.locator("#notices-page-list time").first, "Asia/Tokyo", "%H:%M")
    page.goto(f"{site['url']}/admin/")
    check_time(page.locator("table time").first, "Asia/Tokyo", "%H:%M")

    open_stream_page(page, site["url"], "/live", "market.ticks")
    ingest(site["url"], site["token"], [{"topic": "market.ticks", "type": "tick", "payload": {}}])
    row_time = page.locator("#event-list .event-item time").first
    expect(row_time).to_be_visible()
    check_time(row_time, "Asia/Tokyo", "%H:%M:%S")

    # The toast of a notice sent now shows the same clock.
    send_admin_notice(admin, site["url"], level="info", title="Second", body="", target="all")
    toast = page.locator("#notice-toasts .toast", has_text="Second")
    expect(toast).to_be_visible()
    sent = json.loads(page.evaluate("JSON.stringify(new Date().toISOString())"))
    assert shown_in("Asia/Tokyo", sent, "%H:") in toast.inner_text()

    # A dashboard widget's times too: a table row's and the widget's "Updated".
    open_stream_page(page, site["url"], "/dashboard", "market.ticks")
    tick = {"topic": "market.ticks", "type": "tick", "key": "CLOCK", "payload": {"price": 1}}
    ingest(site["url"], site["token"], [tick])
    prices = page.locator("section.widget", has_text="Prices")
    cell_time = prices.locator("tr[data-key=CLOCK] time")
    expect(cell_time).to_be_visible()
    check_time(cell_time, "Asia/Tokyo", "%H:%M:%S")
    check_time(prices.locator(".widget-updated time"), "Asia/Tokyo", "%H:%M:%S")
    context.close()
    assert problems.messages == []
