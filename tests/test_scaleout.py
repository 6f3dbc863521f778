"""Pulseboard spread over hosts: a node, a consumer or a web host lost, and no page notices.

The topology of a scaled-out site, on one machine: three RabbitMQ nodes
clustered (names, ports and folders of their own, listening on the hosts'
network), a MariaDB of the test's own, two web hosts and two consumer hosts
(each a network namespace with its own address, ``hosts.py``), and Nginx in
front, rendered from the product's own templates with the web hosts as its
upstream.  Clients that behave like the page (WebSocket and long-polling, two
of them on two topics) connect through Nginx, each from a loopback address of
its own, so the sticky hash on the client address puts some on each web host.

Three faults, one stream each: 5,000 events at 300/s (about 17 s) with the fault
5 s in, so every fault falls in the middle of a stream and each is counted on
its own.  Per fault and client: missing 0, duplicated 0, out of order 0, and
the longest pause in arrivals from the fault on (how long until events flowed
again at that client).

1. Stop the RabbitMQ node that leads the stream queue (a quorum queue).
2. SIGKILL the active consumer (single active consumer); the standby takes over.
3. Take the network of a web host that has clients down for 10 s.

The node stopped in the first fault stays down: the later faults run on the
two nodes left, still a majority of the three.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from pulseboard.config import load_config
from pulseboard.events.topology import Topology

from .cluster import rabbit_cluster
from .deploy_site import render_site, running_nginx
from .faults import SteadyProducer, TimedPageClient, count, print_counts
from .hosts import (
    client_session,
    close_websockets,
    database_for_hosts,
    network,
    start_mariadb,
    websocket_options,
)
from .pipeline import ConsumerProcess, EventLog, declared_topology, wait_for
from .servers import base_env, free_port, gunicorn, run_cli
from .streaming import create_users, signed_in_session

pytestmark = pytest.mark.rabbitmq

MAIN, SIDE = "market.ticks", "system.metrics"
EVENTS, RATE = 5000, 300
BATCH = 10  # events per publish: a quorum queue's confirm round trip caps one at a time
FAULT_AFTER = 5.0  # seconds into the stream
NETWORK_DOWN = 10.0
WEB_PORT = 8000  # every host has a network of its own: the same port on each
WEB_HOSTS = ("web1", "web2")
# (transport, topics, web host the client is meant to land on)
CLIENTS = (
    ("websocket", [MAIN], "web1"),
    ("polling", [MAIN], "web1"),
    ("websocket", [MAIN, SIDE], "web1"),
    ("websocket", [MAIN], "web2"),
    ("polling", [MAIN, SIDE], "web2"),
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if os.geteuid() != 0:
        message = "network namespaces need root"
        if os.environ.get("PULSEBOARD_ALLOW_SKIP") == "1":
            pytest.skip(message)
        pytest.fail(f"{message} (set PULSEBOARD_ALLOW_SKIP=1 to skip instead)")
    tmp = tmp_path_factory.mktemp("scaleout")
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(network())
        hosts = {role: net.add_host(role) for role in (*WEB_HOSTS, "consumer1", "consumer2")}
        # The database starts while the RabbitMQ nodes boot and cluster.
        pool = stack.enter_context(ThreadPoolExecutor(1))
        mariadb_started = pool.submit(start_mariadb, tmp / "db", net.gateway)
        stack.callback(lambda: mariadb_started.result().stop())
        cluster = stack.enter_context(rabbit_cluster("pbs", 3, address=net.gateway))
        mariadb = mariadb_started.result()
        http_port, https_port = free_port(), free_port()
        public_url = f"https://localhost:{https_port}"
        env = base_env(
            APP_ENV="production",
            SECRET_KEY=secrets.token_urlsafe(48),
            APP_SLUG=f"pbt-{secrets.token_hex(4)}",
            APP_DOMAIN="localhost",
            DATABASE_URL=database_for_hosts(mariadb, net.gateway),
            BROKER_URL=cluster.url,
            PUBLIC_ORIGINS=public_url,
            PROXY_FIX_HOPS="1",
            TRUSTED_PROXIES=net.gateway,  # Nginx reaches the web hosts from the bridge
            METRICS_ALLOWED_NETWORKS=str(net.subnet),
            AUTH_RATE_LIMIT="1000/minute",
            CONSUMER_BATCH_WAIT_MS="5",
            CONSUMER_RETRY_MAX_MS="2000",
            EVENT_SINGLE_ACTIVE_CONSUMER="1",
            PORT=str(WEB_PORT),
        )
        assert run_cli("db", "upgrade", env={**env, "TMPDIR": str(tmp)}).returncode == 0
        create_users({**env, "TMPDIR": str(tmp)})
        config = load_config(env)
        topology = Topology.from_config(config)
        stack.enter_context(declared_topology(cluster.url, topology))
        web_urls = {}
        for name in WEB_HOSTS:
            host = hosts[name]
            (tmp / name).mkdir()
            host_env = {**env, "TMPDIR": str(tmp / name), "WEB_BIND_ADDRESS": host.address}
            web_urls[name] = stack.enter_context(
                gunicorn(
                    host_env,
                    port=WEB_PORT,
                    prefix=tuple(host.command([])),
                    ready_timeout=60,
                )
            )
        consumers = {}
        for name in ("consumer1", "consumer2"):
            consumer = ConsumerProcess(
                env, tmp / f"{name}.log", prefix=tuple(hosts[name].command([]))
            )
            stack.callback(consumer.stop)
            consumers[hosts[name].address] = consumer
        for consumer in consumers.values():  # which one is active is asked when it matters
            consumer.wait_connected()
        upstream = [f"{hosts[name].address}:{WEB_PORT}" for name in WEB_HOSTS]
        # The Nginx host runs no web instance of its own: the upstream is the web hosts'.
        conf = render_site(
            tmp / "nginx", [], http_port, https_port,
            WEB_INSTANCES="0", WEB_UPSTREAMS=",".join(upstream),
        )  # fmt: skip
        served = next((conf.parent / "assets" / "nginx").glob("*-upstream.conf")).read_text()
        assert re.findall(r"^\s*server (\S+)", served, re.MULTILINE) == upstream
        stack.enter_context(running_nginx(conf, https_port))
        # requests (and the Socket.IO client's polling) trust the test certificate.
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("REQUESTS_CA_BUNDLE", str(conf.parent / "cert.pem"))
        log = EventLog(env["DATABASE_URL"])
        stack.callback(log.close)
        print(
            f"\nhosts, RabbitMQ nodes, database and Nginx up in {time.monotonic() - started:.0f} s"
        )
        yield {
            "url": public_url,
            "cacert": conf.parent / "cert.pem",
            "config": config,
            "queue": topology.queue.name,
            "cluster": cluster,
            "hosts": hosts,
            "web_urls": web_urls,
            "consumers": consumers,
            "log": log,
        }


def sockets_by_host(site) -> dict[str, int]:
    """Connected /stream sockets on each web host, from its own /metrics."""
    counts = {}
    for name, url in site["web_urls"].items():
        text = requests.get(f"{url}/metrics", timeout=5).text
        found = re.findall(r"^pulseboard_sockets_connected\{[^}]*\} (\S+)$", text, re.MULTILINE)
        counts[name] = int(sum(float(value) for value in found))
    return counts


@pytest.fixture(scope="module")
def pages(site):
    """The clients of ``CLIENTS``, each on the web host it is meant for: an address
    that lands elsewhere is kept for a later client meant for that host."""
    opened: dict[str, tuple[TimedPageClient, dict]] = {}  # name -> client, its options
    placed: dict[str, str] = {}
    spare: dict[str, list[str]] = {name: [] for name in WEB_HOSTS}
    addresses = (f"127.0.0.{number}" for number in range(2, 255))
    try:
        for transport, topics, wanted in CLIENTS:
            while True:
                address = spare[wanted].pop(0) if spare[wanted] else next(addresses)
                before = sockets_by_host(site)
                page, options = open_page(site, address, transport, topics)
                landed = wait_for(lambda b=before: new_socket_host(site, b), 10, message="socket")
                if landed == wanted:
                    break
                close_page(page, options)
                spare[landed].append(address)
                wait_for(lambda b=before: sockets_by_host(site) == b, 10, message="closed")
            # "+": on two topics
            name = f"{'ws' if transport == 'websocket' else 'poll'}{'+' * (len(topics) > 1)}"
            name = f"{name}/{wanted}"
            opened[name], placed[name] = (page, options), wanted
            print(f"{name} from {address}", end="; " if len(opened) < len(CLIENTS) else "\n")
        yield {"pages": {name: page for name, (page, _) in opened.items()}, "hosts": placed}
    finally:
        for page, options in opened.values():
            close_page(page, options)


def open_page(site, address: str, transport: str, topics: list[str]):
    """A signed-in page client at ``address``, and its WebSocket options."""
    browser = client_session(address, site["cacert"])
    # Over HTTPS the CSRF check wants the Referer a browser sends.
    browser.headers["Referer"] = f"{site['url']}/auth/login"
    signed_in_session(site["url"], "bob@example.com", browser=browser)
    options = websocket_options(address, site["cacert"])
    page = TimedPageClient(site["url"], browser, transport, topics, websocket_extra_options=options)
    return page, options


def close_page(page: TimedPageClient, options: dict) -> None:
    page.close()
    close_websockets(options)


def new_socket_host(site, before: dict[str, int]) -> str | None:
    now = sockets_by_host(site)
    grown = [name for name in now if now[name] > before[name]]
    return grown[0] if len(grown) == 1 and sum(now.values()) == sum(before.values()) + 1 else None


def stream_through(site, pages, describe: str, fault) -> None:
    """Stream EVENTS at RATE, run ``fault`` FAULT_AFTER seconds in, and assert that every
    client got this stream's events once each, in order; print the counts and pauses."""
    log, clients = site["log"], pages["pages"]
    start = max((seq for seq, *_ in log.rows()), default=0)
    counters = {name: (p.duplicated, p.out_of_order, p.holes) for name, p in clients.items()}
    producer = SteadyProducer(site["config"], EVENTS, RATE, MAIN, SIDE, batch=BATCH)
    started = time.monotonic()
    producer.start()
    time.sleep(FAULT_AFTER)
    fault_at = time.monotonic()
    fault()
    producer.join(timeout=EVENTS / RATE + 120)
    assert not producer.is_alive() and producer.error is None, producer.error
    produced = time.monotonic() - started
    stored = wait_for(
        lambda: (rows := [r for r in log.rows() if r[0] > start])
        and len(rows) >= len(producer.confirmed)
        and rows,
        90,
        message="every confirmed event stored",
    )
    assert len(stored) == len(producer.confirmed)  # each once, whatever was redelivered
    expected = {MAIN: [], SIDE: []}
    for seq, _, topic in stored:
        expected[topic].append(seq)
    with contextlib.suppress(AssertionError):  # then count whatever arrived
        wait_for(lambda: all(count(n, p, expected).missing == 0 for n, p in clients.items()), 60)
    counts = []
    for name, page in clients.items():
        duplicated, out_of_order, holes = counters[name]
        counts.append(
            dataclasses.replace(
                count(name, page, expected),
                duplicated=page.duplicated - duplicated,
                out_of_order=page.out_of_order - out_of_order,
                holes=page.holes - holes,
            )
        )
    print_counts(describe, counts)
    print(f"  {len(stored)} events in {produced:.1f} s ({len(stored) / produced:.0f}/s)")
    for name, page in clients.items():
        # Until the client's last arrival: a client that is quicker than the
        # others does not wait for them here.  None since the fault: until now.
        last = max((t for t in page.arrivals if t >= fault_at), default=time.monotonic())
        pause = page.longest_pause(fault_at, last)
        print(f"  {name:<13} longest pause in arrivals after the fault: {pause:.2f} s")
    assert all((c.missing, c.duplicated, c.out_of_order) == (0, 0, 0) for c in counts)


def test_stopping_the_rabbitmq_node_that_leads_the_stream_queue(site, pages):
    cluster = site["cluster"]
    leader = cluster.leader_of(site["queue"])
    stopping = threading.Thread(target=cluster.stop, args=(leader,))

    def stop_the_leader():
        stopping.start()

    stream_through(
        site, pages, f"stopped {leader.node}, the stream queue's leader", stop_the_leader
    )
    stopping.join(60)
    assert cluster.leader_of(site["queue"]) is not leader, "another node leads the queue now"


def test_killing_the_active_consumer(site, pages):
    cluster, queue = site["cluster"], site["queue"]
    before = cluster.consumer_hosts(queue)
    [active] = [address for address, is_active in before.items() if is_active]
    assert sorted(before.values()) == [False, True], "one active consumer, one standby"
    killed = site["consumers"][active]

    def kill_the_active_consumer():
        os.killpg(killed.process.pid, signal.SIGKILL)
        killed.process.wait(10)

    stream_through(
        site, pages, f"SIGKILL to the active consumer on {active}", kill_the_active_consumer
    )
    after = cluster.consumer_hosts(queue)
    assert active not in after and list(after.values()) == [True], after


def test_a_web_host_cut_off_for_ten_seconds(site, pages):
    name = "web1"
    host = site["hosts"][name]
    on_host = [client for client, placed in pages["hosts"].items() if placed == name]
    assert on_host and sockets_by_host(site)[name] >= len(on_host), "clients on the cut-off host"

    def cut_off():
        host.network_down()
        try:
            time.sleep(NETWORK_DOWN)
        finally:
            host.network_up()

    stream_through(
        site, pages, f"network of {name} ({host.address}) down for {NETWORK_DOWN:.0f} s", cut_off
    )
