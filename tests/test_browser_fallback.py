"""Behind a proxy that refuses or drops WebSocket upgrades, the pages still get every
event, over long-polling, with no parameter; where WebSocket works they end on it.

Real Chromium opens /live and /dashboard through ``UpgradeSpoilingProxy`` (a
strict corporate proxy, a mobile carrier), exactly as a person would; nothing
in the page is told to poll.  What arrives is checked against the event log.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .browser import open_stream_page, sign_in
from .pipeline import EventLog, wait_for
from .streaming import embedded_site, ingest
from .upgrade_proxy import UpgradeSpoilingProxy

WAIT_MS = 15_000
MODES = ["refuse", "drop"]


@pytest.fixture(scope="module")
def proxies():
    with (
        UpgradeSpoilingProxy("refuse") as refuse,
        UpgradeSpoilingProxy("drop") as drop,
        UpgradeSpoilingProxy("pass") as passing,
    ):
        yield {"refuse": refuse, "drop": drop, "pass": passing}


@pytest.fixture(scope="module")
def site(tmp_path_factory, proxies):
    # The pages' origin is the proxy's, as for a browser behind it.
    origins = ",".join(f"http://127.0.0.1:{proxy.port}" for proxy in proxies.values())
    with embedded_site(tmp_path_factory.mktemp("fallback"), PUBLIC_ORIGINS=origins) as site:
        port = int(site["url"].rsplit(":", 1)[1])
        for proxy in proxies.values():
            proxy.upstream_port = port
        yield site


@pytest.fixture
def page(browser):
    # No PageProblems here: the refused upgrades are logged in the console, as they
    # would be for a person behind such a proxy.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def stored_ids(site, ids: list[str]) -> list[str]:
    log = EventLog(site["db"])
    try:
        wait_for(lambda: set(ids) <= {row[1] for row in log.rows()}, 10, message="stored")
        return [row[1] for row in log.rows() if row[1] in set(ids)]
    finally:
        log.close()


def tick(n: int) -> dict:
    return {"topic": "market.ticks", "type": "tick", "key": f"K{n}", "payload": {"price": n}}


@pytest.mark.parametrize("mode", MODES)
def test_the_live_page_gets_every_event_over_polling_behind_the_proxy(page, site, proxies, mode):
    proxy = proxies[mode]
    url = f"http://127.0.0.1:{proxy.port}"
    sign_in(page, url)
    spoiled = proxy.upgrades_spoiled
    open_stream_page(page, url, "/live", "market.ticks")
    # The page tried the upgrade, was refused, and stayed on polling.
    wait_for(lambda: proxy.upgrades_spoiled > spoiled, 10, message="an upgrade tried")
    expect(page.locator("#conn-state")).to_have_text(re.compile("Connected"))
    expect(page.locator("#transport")).to_have_text("Transport: polling")
    ids = ingest(site["url"], site["token"], [tick(n) for n in range(5)])
    rows = page.locator("#event-list .event-item")
    expect(rows).to_have_count(5)
    shown = [int(seq) for seq in rows.evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    log = EventLog(site["db"])
    try:
        seq_of = {row[1]: row[0] for row in log.rows()}
    finally:
        log.close()
    assert sorted(shown) == sorted(seq_of[event_id] for event_id in stored_ids(site, ids))


@pytest.mark.parametrize("mode", MODES)
def test_the_dashboard_follows_the_stream_over_polling_behind_the_proxy(page, site, proxies, mode):
    url = f"http://127.0.0.1:{proxies[mode].port}"
    sign_in(page, url)
    open_stream_page(page, url, "/dashboard", "market.ticks")
    ingest(
        site["url"],
        site["token"],
        [
            {
                "topic": "market.ticks",
                "type": "tick",
                "key": "FALLB",
                "payload": {"symbol": "FALLB", "price": 102.25, "change_pct": 0.5},
            }
        ],
    )
    row = page.locator("section.widget-kind-table tr[data-key=FALLB]")
    expect(row.locator(".widget-cell-value")).to_have_text("102.25")
    assert page.evaluate("window.Pulseboard.stream.transport") == "polling"


def test_where_websocket_works_the_page_ends_on_it(page, site, proxies):
    url = f"http://127.0.0.1:{proxies['pass'].port}"
    sign_in(page, url)
    open_stream_page(page, url, "/live", "market.ticks")
    expect(page.locator("#transport")).to_have_text("Transport: websocket")
    [event_id] = ingest(site["url"], site["token"], [tick(99)])
    expect(page.locator("#event-list .event-item")).to_have_count(1)
    assert stored_ids(site, [event_id]) == [event_id]
