"""Deliveries per second and p99 latency with 1, 2 and 3 web "hosts".

    .venv/bin/python bench/hosts.py [--hosts 1,2,3] [--clients 300] [--rate 100]
                                    [--seconds 10] [--out bench/results/hosts.json]

Prints a table per host count and writes the rows to ``--out``.

Run as root (network namespaces).  The topology of tests/test_scaleout.py:
three RabbitMQ nodes clustered (the stream queue a quorum queue), a MariaDB of
its own, two consumer hosts (one active, one standby) and web hosts, each host
a network namespace with an address of its own on one bridge (tests/hosts.py).
For each host count, that many web hosts start (one gunicorn instance each),
``--clients`` Node.js Socket.IO clients (bench/common.py) are shared evenly
between them, ``--rate`` events a second are published, and the figures of
bench/delivery.py are taken over a ``--seconds`` window: events received by all
clients per second, latency percentiles, CPU of the web instances and of the
rest (consumers, RabbitMQ nodes, database).  Each client process connects to its
host's address directly: through Nginx, whose sticky hash is on the client's
address, one process's clients would all land on one host.

What this can show on a 2-core machine, and what it cannot: the namespaces
give every host its own network stack, not its own CPU.  Clients, producer,
three RabbitMQ nodes, the database, the consumers and every web instance share
the same two cores, so more web hosts cannot deliver more: each added instance
is one more process on the same cores, and every instance receives every event
from the Socket.IO fan-out whether or not its clients want it.  What the rows
do show: that the stream works spread over hosts (every client gets every
event), what spreading costs (web CPU per delivery rises with each host, since
each one decodes and routes the whole stream), and the web CPU per delivery,
the per-instance figure a capacity estimate for real hosts starts from.  Each
row notes the machine's load as its window closed: other work on the cores
weighs on every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import PASSWORD, Server, children, feed_pulseboard, prepare, report
from delivery import measure, table
from tests.cluster import rabbit_cluster
from tests.hosts import Host, database_for_hosts, ip, network, start_mariadb
from tests.pipeline import ConsumerProcess, declared_topology
from tests.servers import base_env, gunicorn, run_cli
from tests.streaming import signed_in_session

from pulseboard.config import load_config
from pulseboard.events.topology import Topology

WEB_PORT = 8000  # every host has a network of its own: the same port on each
EMAIL = "bench@example.com"


def web_worker(host: Host) -> int:
    """The gunicorn worker on ``host``: the process there whose parent is there too."""
    pids = [int(pid) for pid in ip("netns", "pids", host.name).split()]
    return next(pid for pid in pids if any(pid in children(parent) for parent in pids))


@contextlib.contextmanager
def topology(web_hosts: int, tmp: Path):
    """Everything but the web instances; yields what ``web_tier`` needs."""
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(network())
        webs = [net.add_host(f"web{number}") for number in range(1, web_hosts + 1)]
        consumer_hosts = [net.add_host(f"consumer{number}") for number in (1, 2)]
        pool = stack.enter_context(ThreadPoolExecutor(1))
        mariadb_started = pool.submit(start_mariadb, tmp / "db", net.gateway)
        stack.callback(lambda: mariadb_started.result().stop())
        cluster = stack.enter_context(rabbit_cluster("pbb", 3, address=net.gateway))
        mariadb = mariadb_started.result()
        env = base_env(
            APP_SLUG=f"bench-{secrets.token_hex(3)}",
            DATABASE_URL=database_for_hosts(mariadb, net.gateway),
            BROKER_URL=cluster.url,
            TMPDIR=str(tmp),
            PUBLIC_ORIGINS=",".join(f"http://{host.address}:{WEB_PORT}" for host in webs),
            TRUSTED_PROXIES=net.gateway,
            AUTH_RATE_LIMIT="1000/minute",
            EVENT_SINGLE_ACTIVE_CONSUMER="1",
            PORT=str(WEB_PORT),
        )
        assert run_cli("db", "upgrade", env=env).returncode == 0
        created = run_cli("users", "create", EMAIL, "--password-stdin", env=env, input=PASSWORD)
        assert created.returncode == 0, created.stderr
        stack.enter_context(declared_topology(cluster.url, Topology.from_config(load_config(env))))
        consumers = []
        for host in consumer_hosts:
            consumer = ConsumerProcess(
                env, tmp / f"{host.name}.log", prefix=tuple(host.command([]))
            )
            stack.callback(consumer.stop)
            consumers.append(consumer)
        for consumer in consumers:
            consumer.wait_connected()
        others = [consumer.process.pid for consumer in consumers]
        others += [mariadb.process.pid]
        others += [pid for node in cluster.nodes for pid in node._running_pids()]
        yield {"env": env, "webs": webs, "other_pids": others}


@contextlib.contextmanager
def web_tier(site: dict, count: int, tmp: Path):
    """``count`` web hosts serving, as a bench/common.py Server."""
    with contextlib.ExitStack() as stack:
        urls = []
        for host in site["webs"][:count]:
            folder = tmp / f"{host.name}-{count}"
            folder.mkdir()
            env = {**site["env"], "TMPDIR": str(folder), "WEB_BIND_ADDRESS": host.address}
            urls.append(
                stack.enter_context(gunicorn(env, WEB_PORT, prefix=tuple(host.command([]))))
            )
        browser = signed_in_session(urls[0], EMAIL, PASSWORD)
        server = Server()
        server.name = "pulseboard"
        server.urls = urls
        server.cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
        browser.close()
        server.web_pids = [web_worker(host) for host in site["webs"][:count]]
        server.other_pids = site["other_pids"]
        server.feed = lambda rate, seconds: feed_pulseboard(site["env"], rate, seconds)
        yield server


def summary(rows: list[dict]) -> str:
    head = (
        f"{'web hosts':>9}{'delivered/s':>13}{'ratio':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'webCPU':>8}{'errors':>8}{'load':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        latency = row["latency_ms"]
        lines.append(
            f"{row['instances']:>9}{row['delivered_per_s']:>13,}{row['delivered_ratio']:>7}"
            f"{latency.get('p50', '-'):>8}{latency.get('p99', '-'):>8}{row['web_cpu']:>8}"
            f"{row['client_errors']:>8}{row['load_average']:>6}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1,2,3", help="web host counts, comma-separated")
    # What one web host here takes with every event delivered: with the three RabbitMQ
    # nodes on the same two cores, 500 clients at 200/s already leave a backlog.
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "hosts.json"
    )
    arguments = parser.parse_args()
    counts = [int(count) for count in arguments.hosts.split(",")]
    prepare()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pb-bench-hosts-") as folder:
        tmp = Path(folder)
        with topology(max(counts), tmp) as site:
            for count in counts:
                with web_tier(site, count, tmp) as server:
                    row = measure(
                        server, arguments.clients, arguments.rate, arguments.seconds, "websocket"
                    )
                # The machine's 1-minute load as the window closed: other work on the
                # same cores shows here and weighs on every figure of the row.
                rows.append({**row, "hosts": count, "load_average": round(os.getloadavg()[0], 1)})
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    print()
    print(summary(rows))
    result = {
        "benchmark": "hosts",
        "clients": arguments.clients,
        "rate": arguments.rate,
        "seconds": arguments.seconds,
        "rows": rows,
    }
    report(result, arguments.out)


if __name__ == "__main__":
    main()
