"""A reconnect storm is shed politely: over the joining limit a connect is refused at
once as retryable, never left to time out; so is a new handshake, before Engine.IO
makes a session of it, and while the event loop runs late; every join frees its
place; anonymous handshakes hold none; a connect the database could not answer is
refused as retryable too, and the page retries them all.

Raw Engine.IO requests (``requests``) play the clients where the exact answer matters;
real Chromium plays the page that must come back by itself.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from sqlalchemy import create_engine

from pulseboard.stream.admission import HandshakeShedding, JoinGate, LoopLag

from .browser import open_stream_page, sign_in
from .conftest import MYSQL_SERVER
from .servers import base_env, free_port, gunicorn, run_cli, temporary_database
from .streaming import StreamClient, create_users, embedded_site, ingest, signed_in_session

POLLING = "/socket.io/?EIO=4&transport=polling"


class RawSocket:
    """One Engine.IO long-polling connection, request by request."""

    def __init__(self, url: str, browser: requests.Session | None = None):
        self.url = url
        self.http = browser or requests.Session()
        self.sid = None

    def handshake(self, origin: str | None = None) -> requests.Response:
        response = self.http.get(
            f"{self.url}{POLLING}", headers={"Origin": origin or self.url}, timeout=10
        )
        if response.status_code == 200:
            self.sid = json.loads(response.text[1:])["sid"]
        return response

    def send(self, packet: str) -> None:
        response = self.http.post(
            f"{self.url}{POLLING}&sid={self.sid}",
            data=packet.encode(),
            headers={"Origin": self.url, "Content-Type": "text/plain;charset=UTF-8"},
            timeout=10,
        )
        assert response.status_code == 200, response.text

    def receive(self) -> list[str]:
        response = self.http.get(
            f"{self.url}{POLLING}&sid={self.sid}", headers={"Origin": self.url}, timeout=40
        )
        assert response.status_code == 200, response.text
        return response.text.split("\x1e")

    def receive_until(self, prefix: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for packet in self.receive():
                if packet.startswith(prefix):
                    return packet
        raise AssertionError(f"no packet starting {prefix!r} within {timeout}s")


def connect(socket: RawSocket) -> str:
    """Ask to connect to /stream on an open connection: the answer packet."""
    socket.send("40/stream,{}")
    return socket.receive_until("4")


def joined(url: str, browser: requests.Session) -> RawSocket:
    """A signed-in socket that connected to /stream and has not subscribed: it holds a
    place until STREAM_JOIN_TIMEOUT."""
    socket = RawSocket(url, browser)
    assert socket.handshake().status_code == 200
    assert connect(socket).startswith("40/stream,")
    return socket


REFUSED = (
    '44/stream,{"message":"too many connections are joining; retry shortly","data":{"retry":true}}'
)


# --- the gate alone ------------------------------------------------------------------------


def test_the_gate_admits_up_to_its_limit_and_frees_places():
    gate = JoinGate(limit=2, timeout=60)
    first, second = gate.admit(), gate.admit()
    assert first is not None and second is not None
    assert gate.admit() is None
    first.done()
    first.done()  # twice is harmless, and frees one place only
    third = gate.admit()
    assert third is not None
    assert gate.admit() is None
    assert len(gate) == 2


def test_a_join_that_never_finishes_gives_its_place_back_after_the_timeout():
    gate = JoinGate(limit=1, timeout=0.2)
    assert gate.admit() is not None
    assert gate.admit() is None
    time.sleep(0.25)
    assert gate.admit() is not None


def test_the_loop_counts_as_late_when_it_stays_late_not_after_one_pause():
    lag = LoopLag(window=3)
    lag.observe(0.8)  # one long pause (a password hash): not a busy loop
    assert lag.seconds == 0.0
    lag.observe(0.4)
    lag.observe(0.3)
    assert lag.seconds == 0.3  # late at each of the last three wake-ups
    lag.observe(0.0)
    assert lag.seconds == 0.0  # on time again: the door opens
    lag.observe(-0.001)  # woken a hair early counts as on time
    assert lag.seconds == 0.0


class Gate:
    def __init__(self, full: bool):
        self.full = full
        self.limit = 1

    def is_full(self) -> bool:
        return self.full

    def __len__(self) -> int:
        return int(self.full)


def shed_answer(gate, lag_seconds: float, max_lag: float, query: str):
    """What ``HandshakeShedding`` answers for a GET with ``query``: (status, headers, body)."""
    lag = LoopLag()
    lag.started = True  # no loop to measure here: the figure is set by hand
    lag.seconds = lag_seconds
    seen = {}

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"engine.io"]

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    door = HandshakeShedding(app, gate, lag, max_lag, server=None)
    environ = {"PATH_INFO": "/socket.io/", "QUERY_STRING": query, "REQUEST_METHOD": "GET"}
    body = b"".join(door(environ, start_response))
    return seen["status"], seen["headers"], body


@pytest.mark.parametrize(
    "full, lag, max_lag, shed",
    [
        (False, 0.0, 0.25, False),
        (True, 0.0, 0.25, True),  # the gate is full
        (False, 0.3, 0.25, True),  # the loop runs late
        (False, 0.3, 0.0, False),  # lag shedding turned off; the gate still counts
        (True, 0.3, 0.0, True),
    ],
)
def test_a_new_handshake_is_shed_while_the_gate_is_full_or_the_loop_late(full, lag, max_lag, shed):
    status, headers, body = shed_answer(Gate(full), lag, max_lag, "EIO=4&transport=polling")
    if shed:
        assert status.startswith("429")
        assert headers["Retry-After"] == "2"
        assert body == b"too many connections are joining; retry shortly\n"
    else:
        assert (status, body) == ("200 OK", b"engine.io")


def test_the_traffic_of_sockets_that_exist_is_never_shed():
    for query in ("EIO=4&transport=polling&sid=abc", "sid=abc&EIO=4&transport=websocket"):
        status, _, body = shed_answer(Gate(True), 5.0, 0.25, query)
        assert (status, body) == ("200 OK", b"engine.io")
    # "sid" elsewhere in a value is not a sid.
    status, _, _ = shed_answer(Gate(True), 0.0, 0.25, "EIO=4&transport=polling&t=sid=x")
    assert status.startswith("429")


# --- a real instance -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(
        tmp_path_factory.mktemp("admission"),
        STREAM_JOIN_CONCURRENCY="2",
        STREAM_JOIN_TIMEOUT="3",
    ) as site:
        yield site


def wait_until_the_gate_is_empty() -> None:
    """Earlier tests' joins that never subscribed expire (STREAM_JOIN_TIMEOUT)."""
    time.sleep(3.2)


def test_a_connect_over_the_limit_is_refused_at_once_as_retryable(site):
    url = site["url"]
    browser = signed_in_session(url, "bob@example.com")
    wait_until_the_gate_is_empty()
    third = RawSocket(url, browser)
    assert third.handshake().status_code == 200  # a handshake is never counted
    held = [joined(url, browser), joined(url, browser)]
    started = time.monotonic()
    assert connect(third) == REFUSED
    assert time.monotonic() - started < 2
    # The places come back after STREAM_JOIN_TIMEOUT; the refused connect, retried
    # on the same connection, then gets in.
    time.sleep(3.2)
    assert connect(third).startswith("40/stream,")
    assert held


def test_while_the_gate_is_full_a_new_handshake_is_refused_before_engineio_sees_it(site):
    url = site["url"]
    browser = signed_in_session(url, "bob@example.com")
    wait_until_the_gate_is_empty()
    held = [joined(url, browser), joined(url, browser)]
    late = RawSocket(url, browser)
    started = time.monotonic()
    refused = late.handshake()
    assert time.monotonic() - started < 2
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2"
    assert "retry shortly" in refused.text
    assert late.sid is None  # no Engine.IO session was made
    # The sockets that exist go on: a held one still subscribes.
    held[0].send('42/stream,1["subscribe",{"topics":["market.ticks"]}]')
    assert '"ok":true' in held[0].receive_until("43/stream,1")
    # Once the places come back, the same client gets in.
    time.sleep(3.2)
    assert late.handshake().status_code == 200
    assert connect(late).startswith("40/stream,")


def test_anonymous_handshakes_hold_no_place(site):
    url = site["url"]
    wait_until_the_gate_is_empty()
    quiet = [RawSocket(url) for _ in range(10)]  # five times the limit, never connecting
    for socket in quiet:
        assert socket.handshake().status_code == 200
    browser = signed_in_session(url, "bob@example.com")
    assert joined(url, browser)


def test_a_refused_connect_frees_its_place_at_once(site):
    url = site["url"]
    wait_until_the_gate_is_empty()
    for _ in range(4):  # twice the limit: each place must come back at once
        anonymous = RawSocket(url)
        assert anonymous.handshake().status_code == 200
        assert "sign in first" in connect(anonymous)
    assert joined(url, signed_in_session(url, "bob@example.com"))


def test_a_socket_that_subscribed_has_joined_and_frees_its_place(site):
    url = site["url"]
    wait_until_the_gate_is_empty()
    clients = []
    try:
        for _ in range(4):  # twice the limit
            client = StreamClient(url, signed_in_session(url, "bob@example.com"), "polling")
            clients.append(client)
            assert client.call("subscribe", {"topics": ["market.ticks"]})["ok"]
        # Four sockets connected and subscribed; the places are free for more.
        assert joined(url, signed_in_session(url, "bob@example.com"))
    finally:
        for client in clients:
            client.close()


def test_the_page_comes_back_by_itself_after_being_turned_away(site, browser):
    url = site["url"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        sign_in(page, url)
        page.goto("about:blank")  # the page signing in lands on opens a socket too
        wait_until_the_gate_is_empty()
        log = Path(site["log"])
        turned_away = re.compile(r"joining refused|new connection refused")
        refused_before = len(turned_away.findall(log.read_text()))
        # Two sockets that never subscribe fill the gate for 3 s: the page's connect is
        # refused, and its backoff brings it back once they expire.
        holder = signed_in_session(url, "bob@example.com")
        held = [joined(url, holder), joined(url, holder)]
        open_stream_page(page, url, "/live", "market.ticks", timeout_ms=20_000)
        assert len(turned_away.findall(log.read_text())) > refused_before, "never turned away"
        expect(page.locator("#conn-state")).to_have_text(re.compile("Connected"))
        ingest(url, site["token"], [{"topic": "market.ticks", "type": "tick", "payload": {}}])
        expect(page.locator("#event-list .event-row")).to_have_count(1)
        assert held
    finally:
        context.close()


# --- a database too busy to answer ---------------------------------------------------------


@contextlib.contextmanager
def one_connection_site(tmp):
    """The in-process bus on MariaDB with a pool of one connection that waits 1 s."""
    with temporary_database(MYSQL_SERVER) as database_url:
        env = base_env(
            DATABASE_URL=database_url,
            TMPDIR=str(tmp),
            AUTH_RATE_LIMIT="1000/minute",
            DB_POOL_SIZE="1",
            DB_POOL_TIMEOUT="1",
        )
        assert run_cli("db", "upgrade", env=env).returncode == 0
        create_users(env)
        with gunicorn(env, port=free_port()) as url:
            yield url, database_url


@contextlib.contextmanager
def sessions_locked(database_url: str):
    """Another client holds the sessions table: reads of it wait."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as holder:
            holder.exec_driver_sql("LOCK TABLES sessions WRITE")
            try:
                yield
            finally:
                holder.exec_driver_sql("UNLOCK TABLES")
    finally:
        engine.dispose()


def test_a_connect_the_database_cannot_answer_is_refused_as_retryable(tmp_path):
    with one_connection_site(tmp_path) as (url, database_url):
        browser = signed_in_session(url, "bob@example.com")
        first, second = RawSocket(url, browser), RawSocket(url, browser)
        assert first.handshake().status_code == 200
        assert second.handshake().status_code == 200
        with sessions_locked(database_url):
            # The first connect takes the only connection and waits on the lock (its
            # POST with it: a connect is handled within the request that brings it);
            # the second cannot get a connection within DB_POOL_TIMEOUT.
            waiting = threading.Thread(target=first.send, args=("40/stream,{}",), daemon=True)
            waiting.start()
            time.sleep(0.5)
            second.send("40/stream,{}")
            refusal = second.receive_until("44/stream,")
            error = json.loads(refusal[len("44/stream,") :])
            assert error == {
                "message": "the server is busy; retry shortly",
                "data": {"retry": True},
            }
        # The lock is gone: the first connect completes, and the second, retried, too.
        waiting.join(15)
        assert first.receive_until("40/stream,")
        second.send("40/stream,{}")
        assert second.receive_until("40/stream,")
        log = (tmp_path / f"gunicorn-{url.rsplit(':', 1)[1]}.log").read_text()
        # No handler failed unanswered (the in-process consumer may meet the one-
        # connection pool too; that is not what this test is about).
        handler_failures = [t for t in log.split("Traceback")[1:] if "_handle_event" in t]
        assert handler_failures == []
