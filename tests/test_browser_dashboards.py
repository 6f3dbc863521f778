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
import re
import threading
import time

import pytest
import requests
from playwright.sync_api import expect

from pulseboard.events.producer import Producer

from .browser import PageProblems, sign_in
from .servers import free_port
from .streaming import StreamClient, rabbitmq_site, signed_in_session

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


BUSY_MS = 5000  # the page's script stays busy this long, its socket's messages queued


def test_a_widget_joining_a_topic_a_narrower_filter_streams_still_gets_every_event(browser, site):
    """Widgets start as their history arrives, so one with a key filter may have the
    server streaming the topic before one without joins.  Here the second joins while
    an event the first takes is on its way to the page: the server will not send that
    one again, and it skipped the one before it (another key).  The second widget
    must still get both, once each and in order."""
    witness = StreamClient(site["url"], signed_in_session(site["url"], "bob@example.com"))
    context, page, problems = new_page(browser, site, "bob@example.com")
    try:
        # In the same room as the page's socket, with the same filter: it gets each
        # round the page's socket gets, as it is sent.
        assert witness.call("subscribe", {"topics": [TOPIC], "keys": ["K0"]})["ok"]
        page.goto(f"{site['url']}/dashboards/")
        page.wait_for_function("() => window.Pulseboard.stream.transport === 'websocket'")
        publish(site, 300, key="K0")
        start = witness.wait_for_events(1)[-1]["seq"]  # where both widgets' history ends
        page.evaluate(
            """([topic, since]) => {
                window.narrow = [];
                window.wide = [];
                window.Pulseboard.stream.subscribe({
                  topics: [topic], keys: ["K0"], since: {[topic]: since},
                  onEvents: (events) => window.narrow.push(...events.map((e) => e.payload.n)),
                });
            }""",
            [TOPIC, start],
        )
        page.wait_for_function("t => window.Pulseboard.stream.subscribed.includes(t)", arg=TOPIC)

        sent = {}

        def publish_while_the_page_is_busy():
            time.sleep(0.5)
            publish(site, 301, key="K2")  # skipped by the narrow filter
            publish(site, 302, key="K0")  # taken by it: sent, and waiting at the page
            witness.wait_for_events(2, timeout=BUSY_MS / 1000)
            sent["at"] = time.monotonic()

        worker = threading.Thread(target=publish_while_the_page_is_busy)
        worker.start()
        page.evaluate(
            """([topic, since, ms]) => {
                const end = Date.now() + ms;
                while (Date.now() < end) {}  // busy: the socket's messages wait
                window.Pulseboard.stream.subscribe({
                  topics: [topic], since: {[topic]: since},
                  onEvents: (events) => window.wide.push(...events.map((e) => e.payload.n)),
                });
            }""",
            [TOPIC, start, BUSY_MS],
        )
        joined = time.monotonic()
        worker.join(10)
        assert sent.get("at", joined) < joined, "event 302 was not sent while the page was busy"

        with contextlib.suppress(Exception):  # then compare whatever arrived
            page.wait_for_function("() => window.wide.length >= 2", timeout=5000)
        assert page.evaluate("() => window.wide") == [301, 302]
        assert page.evaluate("() => window.narrow") == [302]
    finally:
        witness.close()
        context.close()
    assert problems.messages == []


def test_an_event_lost_on_the_way_is_filled_from_the_log_and_handed_on_in_order(browser, site):
    """The page's WebSocket loses one message on its way (a proxy between them drops
    it).  The next event names the lost one as its ``prev``: the page fills the hole
    from the log and its scripts get every event once, in order (a widget that saw
    502 before 501 would drop 501 as old)."""
    context, page, problems = new_page(browser, site, "bob@example.com")
    dropped = []

    def proxy(socket):
        server = socket.connect_to_server()

        def to_page(message):
            # The live message only: the fill's answer carries 501 too.
            if not dropped and isinstance(message, str) and '"n":501' in message.replace(" ", ""):
                dropped.append(message)
            else:
                socket.send(message)

        server.on_message(to_page)

    try:
        page.route_web_socket(re.compile(r"/socket\.io/"), proxy)
        page.goto(f"{site['url']}/dashboards/")
        page.wait_for_function("() => window.Pulseboard.stream.transport === 'websocket'")
        page.evaluate(
            """topic => {
                window.got = [];
                window.Pulseboard.stream.subscribe({
                  topics: [topic],
                  onEvents: (events) => window.got.push(...events.map((e) => e.payload.n)),
                });
            }""",
            TOPIC,
        )
        page.wait_for_function("t => window.Pulseboard.stream.subscribed.includes(t)", arg=TOPIC)
        publish(site, 500, key="K0")
        page.wait_for_function("() => window.got.includes(500)")
        publish(site, 501, key="K0")
        deadline = time.monotonic() + WAIT_MS / 1000
        while not dropped and time.monotonic() < deadline:
            page.wait_for_timeout(50)  # the proxy's handler runs while Playwright waits
        assert dropped, "the proxy never saw event 501"
        publish(site, 502, key="K0")
        with contextlib.suppress(Exception):  # then compare whatever arrived
            page.wait_for_function("() => window.got.length >= 3", timeout=WAIT_MS)
        assert page.evaluate("() => window.got") == [500, 501, 502]
    finally:
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
