"""Honest liveness on a dashboard, in real Chromium (issue 15, "Build" 4).

Each widget says when it last changed; while the stream is down the widgets are
shown stale and no longer say "Live", and the connection badge says so; when the
events missed meanwhile are gone from the log (retention pruned them), a banner
says so and the widgets that may lack values are marked.  A widget whose history
would not load says so for as long as the page is open.

Embedded mode (in-process bus, SQLite) behind gunicorn's gevent worker; events
enter through the ingest API, as a producer's would.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import create_engine, text

from .accessibility import COLOUR_RULES, add_axe, axe_violations, describe
from .browser import DROP_CONNECTION, RECONNECT, PageProblems, open_stream_page, sign_in
from .pipeline import EventLog, wait_for
from .streaming import embedded_site, ingest

pytestmark = pytest.mark.browser

WAIT_MS = 10_000
STARTER_WIDGETS = 5  # dashboards/widgets.py, starter_widgets()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(tmp_path_factory.mktemp("browser-liveness")) as site:
        yield site


def tick(key: str, price: float) -> dict:
    return {"topic": "market.ticks", "type": "tick", "key": key, "payload": {"price": price}}


def prune_all_but_the_newest(database_url: str) -> None:
    """What retention does to a log that outgrew it, down to its newest event."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM events WHERE seq < (SELECT MAX(seq) FROM events)"))
    engine.dispose()


def new_page(browser, site):
    # No colour transitions: axe-core must see the colours a mode settles on.
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    sign_in(page, site["url"])
    return context, page


def test_a_dropped_stream_shows_stale_widgets_and_a_lost_stretch_is_flagged(browser, site):
    context, page = new_page(browser, site)
    problems = PageProblems(page)
    open_stream_page(page, site["url"], "/dashboard", "market.ticks", "system.metrics", "notices")
    widgets = page.locator("section.widget")
    expect(widgets).to_have_count(STARTER_WIDGETS)
    prices = page.locator("section.widget", has_text="Prices")
    badge = page.locator("#dashboard-conn")

    ingest(site["url"], site["token"], [tick("BEFORE", 1.5)])
    expect(prices.locator("tr[data-key=BEFORE] .widget-cell-value")).to_have_text("1.5")
    expect(prices.locator(".widget-status")).to_have_text("Live")
    expect(prices.locator(".widget-updated")).to_have_text(
        re.compile(r"^Updated \d+ s ago · \d\d:\d\d:\d\d$")
    )
    expect(badge).to_have_text("Connected")

    page.evaluate(DROP_CONNECTION)
    expect(badge).to_have_text("Reconnecting…")
    expect(page.locator("section.widget.widget-stale")).to_have_count(STARTER_WIDGETS)
    expect(widgets.locator(".widget-status", has_text="Live")).to_have_count(0)

    # While the page is away, events come and retention prunes past where it stopped.
    away = ingest(site["url"], site["token"], [tick("AWAY", n) for n in (2.5, 3.5, 4.5)])
    log = EventLog(site["db"])
    wait_for(lambda: away[-1] in {row[1] for row in log.rows()}, 10, message="events stored")
    log.close()
    prune_all_but_the_newest(site["db"])
    expect(page.locator("#dashboard-gap")).to_be_hidden()
    page.evaluate(RECONNECT)

    expect(badge).to_have_text("Connected")
    expect(page.locator("section.widget.widget-stale")).to_have_count(0)
    expect(prices.locator(".widget-status")).to_have_text("Live")
    expect(prices.locator("tr[data-key=AWAY] .widget-cell-value")).to_have_text("4.5")
    expect(page.locator("#dashboard-gap")).to_be_visible()
    # The banner points at marked widgets: the one whose topic lost events is one.
    expect(prices).to_have_class(re.compile(r"\bwidget-gap\b"))
    expect(prices.locator(".widget-updated")).to_contain_text("Events missing")
    context.close()
    assert problems.messages == []


def test_a_widget_whose_history_would_not_load_says_so_while_it_goes_on_live(browser, site):
    context, page = new_page(browser, site)
    add_axe(context)
    refusal = {"status": 503, "json": {"error": "the event log is not reachable"}}
    page.route(re.compile(r"/api/v1/events\?"), lambda route: route.fulfill(**refusal))
    open_stream_page(page, site["url"], "/dashboard", "market.ticks")
    prices = page.locator("section.widget", has_text="Prices")

    ingest(site["url"], site["token"], [tick("AFTER", 7.5)])

    expect(prices.locator("tr[data-key=AFTER] .widget-cell-value")).to_have_text("7.5")
    expect(prices.locator(".widget-status")).to_have_text("Live")
    expect(prices).to_have_class(re.compile(r"\bwidget-gap\b"))
    footer = prices.locator(".widget-updated")
    expect(footer).to_contain_text("History unavailable (the event log is not reachable)")
    expect(footer).to_contain_text(re.compile(r"Updated \d+ s ago"))
    problems = []
    for theme in ("light", "dark"):  # the mark stays readable in both colour modes
        page.emulate_media(color_scheme=theme)
        page.wait_for_function("t => document.documentElement.dataset.bsTheme === t", arg=theme)
        problems += describe(axe_violations(page, COLOUR_RULES), f"marked widget, {theme}")
    context.close()
    assert not problems, "axe-core found:\n" + "\n".join(problems)
