"""Nothing lost, duplicated or reordered at any client, through every fault.

A production-shaped site of the suite's own: a private RabbitMQ node and a
private MariaDB (started, restarted and stopped here; the shared services are
never touched), two web instances, the consumer.  For each fault a producer
streams with publisher confirms while clients that behave like the page
(``faults.PageClient``: reconnect by themselves, resubscribe with each topic's
own position) watch: WebSocket on each instance, long-polling, and a page on
two topics.  Each run prints and asserts, per client: events expected (from the
log), received, missing 0, duplicated 0, out of order 0, and holes 0 (events
whose ``prev`` the client did not have: the server must never make it ask).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass, field

import pytest
import websocket

from pulseboard.config import load_config
from pulseboard.events.topology import Topology

from .faults import PageClient, SteadyProducer, WebInstance, count, print_counts
from .pipeline import ConsumerProcess, EventLog, declared_topology, wait_for
from .servers import PrivateMariaDB, base_env, free_port, private_rabbitmq, rabbitmqctl, run_cli
from .streaming import create_users, signed_in_session

MAIN, SIDE = "market.ticks", "system.metrics"


@dataclass
class FaultSite:
    env: dict
    config: dict
    webs: list[WebInstance]
    consumer: ConsumerProcess
    node: str
    mariadb: PrivateMariaDB
    log: EventLog
    tmp: object
    consumers: list[ConsumerProcess] = field(default_factory=list)

    def restart_consumer(self) -> None:
        self.consumer = ConsumerProcess(self.env, self.tmp / "consumer.log")
        self.consumers.append(self.consumer)


@pytest.fixture(scope="module")
def site(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("faults")
    with contextlib.ExitStack() as stack:
        broker_url, node = stack.enter_context(private_rabbitmq())
        mariadb = PrivateMariaDB(tmp / "mariadb")
        mariadb.start()
        stack.callback(mariadb.stop)
        ports = [free_port(), free_port()]
        env = base_env(
            APP_SLUG=f"pbt-{secrets.token_hex(4)}",
            DATABASE_URL=mariadb.create_database(),
            BROKER_URL=broker_url,
            TMPDIR=str(tmp),
            PUBLIC_ORIGINS=",".join(f"http://127.0.0.1:{port}" for port in ports),
            AUTH_RATE_LIMIT="100000/minute",
            CONSUMER_BATCH_WAIT_MS="5",
            CONSUMER_RETRY_MAX_MS="2000",
            # A small queue cap, so the client that stops reading is found quickly.
            STREAM_MAX_QUEUED_KB="256",
        )
        assert run_cli("db", "upgrade", env=env).returncode == 0
        create_users(env)
        config = load_config(env)
        stack.enter_context(declared_topology(broker_url, Topology.from_config(config)))
        webs = [WebInstance(env, port, tmp) for port in ports]
        for web in webs:
            web.start()
            stack.callback(web.stop)
        consumer = ConsumerProcess(env, tmp / "consumer.log")
        consumer.wait_connected()
        log = EventLog(env["DATABASE_URL"])
        stack.callback(log.close)
        found = FaultSite(env, config, webs, consumer, node, mariadb, log, tmp, [consumer])
        stack.callback(lambda: [c.stop() for c in found.consumers])
        yield found


def open_pages(site: FaultSite) -> dict[str, PageClient]:
    first, second = (web.url for web in site.webs)
    pages = {
        "websocket A": (first, "websocket", [MAIN]),
        "websocket B": (second, "websocket", [MAIN]),
        "polling B": (second, "polling", [MAIN]),
        "two topics A": (first, "websocket", [MAIN, SIDE]),
    }
    return {
        name: PageClient(url, signed_in_session(url, "bob@example.com"), transport, topics)
        for name, (url, transport, topics) in pages.items()
    }


def stream_through(site: FaultSite, fault, events: int, rate: float, pad: int = 0) -> None:
    """Stream ``events`` at ``rate`` a second, do ``fault(site, pages)`` a third of the
    way in, then count at every client and assert nothing went wrong anywhere."""
    pages = open_pages(site)
    try:
        start = max((seq for seq, *_ in site.log.rows()), default=0)
        producer = SteadyProducer(site.config, events, rate, MAIN, SIDE, pad=pad)
        producer.start()
        time.sleep(events / rate / 3)
        fault(site, pages)
        producer.join(timeout=events / rate + 120)
        assert not producer.is_alive() and producer.error is None, producer.error
        wait_for(
            lambda: len([r for r in site.log.rows() if r[0] > start]) >= len(producer.confirmed),
            90,
            message="every confirmed event stored",
        )
        expected = {MAIN: [], SIDE: []}
        for seq, _, topic in site.log.rows():
            if seq > start:
                expected[topic].append(seq)
        assert sum(map(len, expected.values())) == len(producer.confirmed)
        with contextlib.suppress(AssertionError):  # then count whatever arrived
            wait_for(lambda: all(count(n, p, expected).missing == 0 for n, p in pages.items()), 60)
        counts = [count(name, page, expected) for name, page in pages.items()]
        print_counts(fault.__name__, counts)
        assert all(
            (c.missing, c.duplicated, c.out_of_order, c.holes) == (0, 0, 0, 0) for c in counts
        )
    finally:
        for page in pages.values():
            page.close()


def broker_restart(site, pages):
    rabbitmqctl(site.node, "stop_app")
    time.sleep(4)  # the web listeners back off past the consumer: the fan-out loses events
    rabbitmqctl(site.node, "start_app")


def consumer_sigkill(site, pages):
    os.killpg(site.consumer.process.pid, signal.SIGKILL)
    site.consumer.process.wait(10)
    site.restart_consumer()


def web_sigkill(site, pages):
    first = site.webs[0]
    first.kill()
    time.sleep(1)
    first.start()  # as systemd's Restart= would


def mariadb_restart(site, pages):
    site.mariadb.stop()
    time.sleep(3)
    site.mariadb.start()


def client_offline_10s(site, pages):
    pages["websocket A"].go_offline()
    pages["two topics A"].go_offline()
    time.sleep(10)
    pages["websocket A"].come_back()
    pages["two topics A"].come_back()


def client_flapping(site, pages):
    for _ in range(16):
        pages["polling B"].go_offline()
        pages["two topics A"].go_offline()
        time.sleep(0.2)
        pages["polling B"].come_back()
        pages["two topics A"].come_back()


@pytest.mark.parametrize(
    "fault, events, rate",
    [
        (broker_restart, 1500, 150),
        (consumer_sigkill, 1500, 150),
        (web_sigkill, 1500, 150),
        (mariadb_restart, 1500, 150),
        (client_offline_10s, 300 * 15, 300),
        (client_flapping, 1500, 150),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_no_event_is_lost_duplicated_or_reordered_at_any_client(site, fault, events, rate):
    stream_through(site, fault, events, rate)


def test_a_client_that_stops_reading_costs_the_others_nothing(site):
    web = site.webs[0]
    browser = signed_in_session(web.url, "bob@example.com")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    stuck = websocket.create_connection(
        f"ws://127.0.0.1:{web.port}/socket.io/?EIO=4&transport=websocket",
        header=[f"Cookie: {cookie}"],
        origin=web.url,
        timeout=5,
        # A small receive window, so the kernel's buffers do not absorb the stream.
        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),),
    )
    try:
        assert stuck.recv().startswith("0")
        stuck.send("40/stream,")
        assert stuck.recv().startswith("40/stream")
        stuck.send(f'42/stream,1["subscribe",{{"topics":["{MAIN}"]}}]')
        # ... and from here on it never reads again.

        def nothing(site, pages):
            pass

        stream_through(site, nothing, 3000, 300, pad=2000)  # 6 MB for the stuck client
        assert "is not reading (queue full); disconnecting it" in web.log_path.read_text()
    finally:
        stuck.close()
