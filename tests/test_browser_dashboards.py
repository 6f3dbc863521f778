"""Dashboards users build, in real Chromium, on MariaDB, RabbitMQ and the consumer.

A user builds a dashboard with each widget kind through the editor; on reload
every widget fills from the event log at once and continues live, and while a
producer publishes across the page load the log widget holds every event once,
in order (no gap and no repeat where history meets the stream), and a number
in rate mode counts events per minute over its window.  A shared
dashboard is read-only for others, and a viewer who may not read a widget's
topic sees neither its data nor its history.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import requests
from playwright.sync_api import expect

from pulseboard.events.producer import Producer

from .browser import PageProblems, sign_in
from .servers import free_port
from .streaming import rabbitmq_site, signed_in_session

pytestmark = pytest.mark.browser

WAIT_MS = 15_000
TOPIC = "market.ticks"


@pytest.fixture(scope="module")
def site(tmp_path_factory, rabbitmq_url, mysql_server):
    tmp = tmp_path_factory.mktemp("dashboards")
    with rabbitmq_site(tmp, rabbitmq_url, mysql_server, [free_port()]) as site:
        site["url"] = site["urls"][0]
        site["producer"] = Producer.from_config(site["config"])
        yield site
        site["producer"].close()


def publish(site, n: int, key: str) -> None:
    site["producer"].publish(TOPIC, "tick", {"n": n, "price": 100 + n}, key=key)


def new_page(browser, site, email):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = PageProblems(page)
    sign_in(page, site["url"], email)
    return context, page, problems


def add_widget(page, kind: str, title: str, topic: str, path: str = "", **fields: str) -> None:
    page.select_option("#kind", kind)
    page.fill("#title", title)
    page.fill("#topic", topic)
    page.fill("#path", path)
    for name, value in fields.items():
        if name in ("mode", "window", "range"):
            page.select_option(f"#{name}", value)
        else:
            page.fill(f"#{name}", value)
    page.click("#widget-form button[type=submit]")
    expect(page.get_by_text(f"Widget “{title}” added.")).to_be_visible()


def log_values(page) -> list[int]:
    items = page.locator("section.widget-kind-log .widget-log li span.text-break")
    return [int(text) for text in items.all_text_contents()]


def test_a_built_dashboard_fills_from_history_and_continues_live_without_a_seam(browser, site):
    context, page, problems = new_page(browser, site, "ada@example.com")
    page.goto(f"{site['url']}/dashboards/")
    page.fill("#new-name", "Desk")
    page.click("form[action='/dashboards/'] button[type=submit]")
    add_widget(page, "number", "Last price", TOPIC, "price", unit="USD", keys="K0")
    add_widget(page, "number", "Peak", TOPIC, "price", mode="max", window="300")
    add_widget(page, "number", "Ticks a minute", TOPIC, "", mode="rate", window="300")
    add_widget(page, "chart", "Price", TOPIC, "price", unit="USD", range="900")
    add_widget(page, "table", "By key", TOPIC, "n")
    add_widget(page, "log", "Ticks", TOPIC, "n")
    dashboard_url = page.url.removesuffix("/edit")

    for n in range(20):  # history, before the page opens
        publish(site, n, key=f"K{n % 3}")
    publisher_done = threading.Event()

    def keep_publishing():  # across the page load: some before, some after the join
        for n in range(20, 45):
            publish(site, n, key=f"K{n % 3}")
            time.sleep(0.05)
        publisher_done.set()

    page.goto(dashboard_url)
    worker = threading.Thread(target=keep_publishing)
    worker.start()
    worker.join(30)
    assert publisher_done.is_set()

    with contextlib.suppress(AssertionError):  # then compare whatever arrived
        log = page.locator("section.widget-kind-log .widget-log li")
        expect(log).to_have_count(45, timeout=WAIT_MS)
    assert log_values(page) == list(range(44, -1, -1))  # newest first, each once
    last_k0 = max(n for n in range(45) if n % 3 == 0)
    number = page.locator("section.widget-kind-number", has_text="Last price")
    expect(number.locator(".widget-value")).to_have_text(f"{100 + last_k0}")
    peak = page.locator("section.widget-kind-number", has_text="Peak")
    expect(peak.locator(".widget-value")).to_have_text("144")
    rate = page.locator("section.widget-kind-number", has_text="Ticks a minute")
    expect(rate).to_contain_text("Events per minute over the last 5 min")
    expect(rate.locator(".widget-value")).to_have_text("9")  # 45 events in 5 minutes
    table = page.locator("section.widget-kind-table")
    for key, last in (("K0", 42), ("K1", 43), ("K2", 44)):
        expect(table.locator(f"tr[data-key={key}] .widget-cell-value")).to_have_text(str(last))
    expect(page.locator(".widget-chart[data-points='45']")).to_have_count(1)
    expect(page.locator("section.widget .widget-status").first).to_have_text("Live")

    # Reloaded: every widget fills from the log at once, with nothing new published.
    page.reload()
    expect(page.locator("section.widget-kind-log .widget-log li")).to_have_count(45)
    assert log_values(page) == list(range(44, -1, -1))
    expect(page.locator(".widget-chart[data-points='45']")).to_have_count(1)
    expect(table.locator("tr[data-key=K2] .widget-cell-value")).to_have_text("44")
    expect(rate.locator(".widget-value")).to_have_text("9")
    publish(site, 45, key="K0")
    expect(page.locator("section.widget-kind-log .widget-log li").first).to_contain_text("45")
    expect(number.locator(".widget-value")).to_have_text("145")
    expect(rate.locator(".widget-value")).to_have_text("9.2")  # 46 in 5 minutes
    context.close()
    assert problems.messages == []


def test_a_shared_dashboard_is_read_only_and_shows_no_topic_its_viewer_may_not_read(browser, site):
    owner, page, owner_problems = new_page(browser, site, "ada@example.com")
    page.goto(f"{site['url']}/dashboards/")
    page.fill("#new-name", "Ops room")
    page.click("form[action='/dashboards/'] button[type=submit]")
    add_widget(page, "log", "Audit trail", "audit", "")  # an admin topic
    add_widget(page, "log", "Market", TOPIC, "n")
    page.check("#shared")
    page.click("form[action$='/settings'] button[type=submit]")
    expect(page.get_by_text("Dashboard saved.")).to_be_visible()
    edit_url = page.url
    view_url = edit_url.removesuffix("/edit")
    site["producer"].publish("audit", "login", {"who": "secret-admin-thing"})
    publish(site, 1000, key="K0")

    viewer, page, viewer_problems = new_page(browser, site, "bob@example.com")
    page.goto(f"{site['url']}/dashboards/")
    page.get_by_role("link", name="Ops room").click()
    denied = page.locator("section.widget", has_text="Audit trail")
    expect(denied.locator(".widget-status")).to_have_text("No access")
    market = page.locator("section.widget", has_text="Market")
    expect(market.locator(".widget-log li").first).to_contain_text("1000")
    assert "secret-admin-thing" not in page.content()
    expect(page.get_by_role("link", name="Edit", exact=True)).to_have_count(0)

    bob = signed_in_session(site["url"], "bob@example.com")
    assert bob.get(f"{view_url}/edit", timeout=10).status_code == 404
    history = bob.get(f"{site['url']}/api/v1/events", params={"topics": "audit"}, timeout=10)
    assert history.status_code == 403 and "secret-admin-thing" not in history.text
    anonymous = requests.get(view_url, timeout=10, allow_redirects=False)
    assert anonymous.status_code in (302, 401)
    viewer.close()
    owner.close()
    assert owner_problems.messages == []
    # The viewer's page never asked for the topic it may not read, so no 403 in its console.
    assert viewer_problems.messages == []


def test_the_editor_refuses_a_topic_its_user_may_not_read(browser, site):
    context, page, _problems = new_page(browser, site, "bob@example.com")
    page.goto(f"{site['url']}/dashboards/")
    page.fill("#new-name", "Mine")
    page.click("form[action='/dashboards/'] button[type=submit]")
    page.select_option("#kind", "log")
    page.fill("#title", "Peek")
    page.fill("#topic", "audit")
    page.click("#widget-form button[type=submit]")
    expect(page.get_by_text("You may not read audit.")).to_be_visible()
    expect(page.locator("#widget-list")).to_have_count(0)
    context.close()
