"""Both ways in that are not a plain WebSocket, through the production Nginx site.

The browser half: real Chromium reaches https://localhost:<Nginx port> through
``UpgradeSpoilingProxy`` acting as a TLS-inspecting corporate proxy.  A plain TCP
proxy in front of Nginx's TLS port could not see the ``Upgrade`` header, so the
proxy ends TLS itself: Chromium uses it as its HTTP proxy (``CONNECT`` for
loopback too), the proxy answers the tunnel with the site's own test certificate
(the context ignores that it is self-signed), reads each connection's first
request in clear, refuses or drops WebSocket upgrades, and forwards everything
over a new TLS connection to Nginx (SNI ``localhost``), which passes it to the
two gunicorn instances.  The page keeps the site's real origin, so Host,
Referer, CSRF, CORS and CSP are exactly what a visitor behind such a proxy
produces; nothing in the site's configuration is widened for the test.  The
pages must get every event over long-polling with no parameter, and end on
WebSocket where nothing is spoiled; what they show is checked against the log.

The SSE half: ``GET /api/v1/stream`` read with ``requests`` over TLS through
Nginx: filters, refusals, ``Last-Event-ID`` resuming with nothing lost or
repeated against the log, revocation ending an open stream, and events arriving
as they happen (the app's ``X-Accel-Buffering: no`` turns Nginx's buffering off).
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests
from playwright.sync_api import expect

from pulseboard.events.producer import Producer

from .browser import open_stream_page, sign_in
from .deploy_site import production_site
from .pipeline import EventLog, wait_for
from .servers import run_cli
from .sse_client import EventStream, is_marker, marker, read_token
from .upgrade_proxy import UpgradeSpoilingProxy

WAIT_MS = 15_000


@pytest.fixture(scope="module")
def site(tmp_path_factory, rabbitmq_url, mysql_server):
    with production_site(
        tmp_path_factory.mktemp("transports-nginx"),
        rabbitmq_url,
        mysql_server,
        STREAM_RIGHTS_CHECK_SECONDS="1",
        SSE_HEARTBEAT_SECONDS="1",
    ) as up:
        producer = Producer.from_config(up["config"])
        up["producer"] = producer
        try:
            yield up
        finally:
            producer.close()


@pytest.fixture(scope="module")
def proxies(site):
    tls = {
        "certfile": str(site["cacert"]),
        "keyfile": str(site["nginx_dir"] / "key.pem"),
        "upstream_tls": True,
    }
    with (
        UpgradeSpoilingProxy("refuse", site["https_port"], **tls) as refuse,
        UpgradeSpoilingProxy("drop", site["https_port"], **tls) as drop,
        UpgradeSpoilingProxy("pass", site["https_port"], **tls) as passing,
    ):
        yield {"refuse": refuse, "drop": drop, "pass": passing}


@pytest.fixture
def behind(browser, proxies):
    """A page whose every connection, loopback included, goes through ``proxies[mode]``."""
    contexts = []

    def page_for(mode: str):
        context = browser.new_context(
            viewport={"width": 1280, "height": 900},
            ignore_https_errors=True,
            proxy={"server": f"http://127.0.0.1:{proxies[mode].port}", "bypass": "<-loopback>"},
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        return page

    yield page_for
    for context in contexts:
        context.close()


def log_rows(site) -> list[tuple[int, str, str]]:
    log = EventLog(site["config"]["SQLALCHEMY_DATABASE_URI"])
    try:
        return log.rows()
    finally:
        log.close()


def stored_seqs(site, ids: list[str]) -> list[int]:
    """The log's seqs for ``ids``, once the consumer has stored them all."""
    wait_for(lambda: set(ids) <= {row[1] for row in log_rows(site)}, 10, message="stored")
    return [seq for seq, event_id, _ in log_rows(site) if event_id in set(ids)]


def publish_ticks(site, count: int, key: str = "K") -> list[str]:
    producer = site["producer"]
    return [
        producer.publish("market.ticks", "tick", {"price": n}, key=f"{key}{n}")
        for n in range(count)
    ]


def assert_page_matches_log(page, site, ids: list[str]) -> None:
    """/live shows each new event once, and from the first of them on exactly the log."""
    new = stored_seqs(site, ids)
    rows = page.locator("#event-list .event-item")
    script = "rows => rows.map(r => Number(r.dataset.seq))"
    page.wait_for_function(
        "seqs => seqs.every(s => [...document.querySelectorAll('#event-list .event-item')]"
        ".some(r => Number(r.dataset.seq) === s))",
        arg=new,
    )
    shown = rows.evaluate_all(script)
    assert len(shown) == len(set(shown)), "an event shown twice"
    logged = [seq for seq, _, topic in log_rows(site) if topic == "market.ticks"]
    assert set(shown) <= set(logged)
    assert sorted(s for s in shown if s >= new[0]) == [s for s in logged if s >= new[0]]


@pytest.mark.parametrize("mode", ["refuse", "drop"])
def test_the_live_page_gets_every_event_over_polling_through_nginx(behind, site, proxies, mode):
    page, proxy = behind(mode), proxies[mode]
    sign_in(page, site["url"])
    spoiled = proxy.upgrades_spoiled
    open_stream_page(page, site["url"], "/live", "market.ticks")
    wait_for(lambda: proxy.upgrades_spoiled > spoiled, 10, message="an upgrade tried")
    expect(page.locator("#conn-state")).to_have_text(re.compile("Connected"))
    expect(page.locator("#transport")).to_have_text("Transport: polling")
    assert "transport" not in page.url
    assert_page_matches_log(page, site, publish_ticks(site, 5, key=f"{mode}-"))
    assert page.evaluate("window.Pulseboard.stream.transport") == "polling"


@pytest.mark.parametrize("mode", ["refuse", "drop"])
def test_the_dashboard_follows_the_stream_over_polling_through_nginx(behind, site, proxies, mode):
    page, proxy = behind(mode), proxies[mode]
    sign_in(page, site["url"])
    spoiled = proxy.upgrades_spoiled
    open_stream_page(page, site["url"], "/dashboard", "market.ticks")
    symbol = f"NGX{mode.upper()}"
    event_id = site["producer"].publish(
        "market.ticks", "tick", {"symbol": symbol, "price": 102.25, "change_pct": 0.5}, key=symbol
    )
    row = page.locator(f"section.widget-kind-table tr[data-key={symbol}]")
    expect(row.locator(".widget-cell-value")).to_have_text("102.25")
    assert len(stored_seqs(site, [event_id])) == 1
    assert proxy.upgrades_spoiled > spoiled
    assert page.evaluate("window.Pulseboard.stream.transport") == "polling"


def test_where_websocket_works_through_nginx_the_page_ends_on_it(behind, site, proxies):
    page, proxy = behind("pass"), proxies["pass"]
    sign_in(page, site["url"])
    open_stream_page(page, site["url"], "/live", "market.ticks")
    expect(page.locator("#transport")).to_have_text("Transport: websocket")
    assert proxy.upgrades_seen >= 1 and proxy.upgrades_spoiled == 0
    assert_page_matches_log(page, site, publish_ticks(site, 3, key="pass-"))


# --- Server-Sent Events through Nginx -------------------------------------------------------


def publish(site, event: dict) -> str:
    return site["producer"].publish(
        event["topic"], event["type"], event["payload"], event.get("key")
    )


def test_sse_filters_on_the_server_through_nginx(site):
    _, token = read_token(site, "market.*")
    stream = EventStream(site, "topics=market.ticks&types=tick&keys=AAPL", token=token)
    assert stream.response.status_code == 200
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-store"
    tick = {"topic": "market.ticks", "type": "tick"}
    for event in (
        {**tick, "key": "AAPL", "payload": {"n": 1}},
        {**tick, "key": "MSFT", "payload": {"n": 2}},
        {**tick, "type": "quote", "key": "AAPL", "payload": {"n": 3}},
        marker("filters", key="AAPL"),
    ):
        publish(site, event)
    events = stream.read_until(is_marker("filters"))
    stream.close()
    assert [(e["type"], e["key"], e["payload"]) for e in events] == [
        ("tick", "AAPL", {"n": 1}),
        ("tick", "AAPL", {"marker": "filters"}),
    ]


def test_sse_refuses_a_topic_outside_the_token_through_nginx(site):
    _, token = read_token(site, "market.*")
    refused = requests.get(
        f"{site['url']}/api/v1/stream?topics=market.ticks,system.metrics",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert refused.status_code == 403 and "system.metrics" in refused.json()["error"]
    anonymous = requests.get(f"{site['url']}/api/v1/stream?topics=market.ticks", timeout=10)
    assert anonymous.status_code == 401


def test_sse_resumes_with_last_event_id_through_nginx_nothing_lost_or_repeated(site):
    topics = ("market.ticks", "system.metrics")
    query = "topics=market.ticks,system.metrics"

    def seqs_in_log() -> list[int]:
        return [seq for seq, _, topic in log_rows(site) if topic in topics]

    start = max(seqs_in_log(), default=0)
    first = EventStream(site, query, token=read_token(site, "*")[1])

    def produce() -> None:
        for index in range(40):
            for topic in topics:
                site["producer"].publish(topic, "t", {"i": index})
            time.sleep(0.01)

    producing = threading.Thread(target=produce)
    producing.start()
    try:
        received = first.read_until(lambda _: len(first.events) >= 30)[:]
        resume_from = first.last_id
        first.close()  # cut mid-stream, while events flow
    finally:
        producing.join()
    assert "market.ticks=" in resume_from and "system.metrics=" in resume_from
    last = publish(site, marker("resume"))
    stored_seqs(site, [last])
    second = EventStream(site, query, token=read_token(site, "*")[1], last_event_id=resume_from)
    received += second.read_until(is_marker("resume"))
    second.close()
    seqs = [event["seq"] for event in received]
    assert len(seqs) == len(set(seqs)), "an event came twice"
    assert sorted(seqs) == [seq for seq in seqs_in_log() if seq > start]


def test_revoking_a_read_token_ends_its_open_stream_through_nginx(site):
    token_id, token = read_token(site, "market.*")
    stream = EventStream(site, "topics=market.ticks", token=token)
    publish(site, marker("before revoke"))
    stream.read_until(is_marker("before revoke"))
    assert run_cli("tokens", "revoke", str(token_id), env=site["env"]).returncode == 0
    started = time.monotonic()
    assert stream.next_event() is None  # the server ends the stream, Nginx passes the end on
    assert time.monotonic() - started < 5


def next_comment(stream: EventStream) -> str:
    """The next comment line (``connected``, a ``ping`` heartbeat); fails if an event
    or the end comes first."""
    for line in stream._lines:
        if line.startswith(":"):
            return line[1:].strip()
        assert not line.startswith("event:"), f"an unexpected event: {line}"
    raise AssertionError("the stream ended")


def test_sse_events_arrive_unbuffered_through_nginx_while_the_stream_stays_open(site):
    _, token = read_token(site, "market.*")
    stream = EventStream(site, "topics=market.ticks", token=token)
    assert stream.response.status_code == 200
    # Nginx acts on the app's X-Accel-Buffering: no and does not pass it on.
    assert "X-Accel-Buffering" not in stream.response.headers
    assert next_comment(stream) == "connected"
    before = time.monotonic()
    assert next_comment(stream) == "ping"  # the stream is open and flowing
    # Heartbeats (8 bytes each) arrive as sent, once a second, not when a buffer fills.
    assert next_comment(stream) == "ping" and time.monotonic() - before < 3
    for round_ in range(3):
        sent = time.monotonic()
        publish(site, marker(f"live {round_}"))
        event = stream.next_event()
        assert event is not None and event["payload"] == {"marker": f"live {round_}"}
        assert time.monotonic() - sent < 5, "the event was held back"
        assert next_comment(stream) == "ping"  # and the connection stays open after it
    stream.close()
