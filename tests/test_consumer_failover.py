"""Two consumers on the stream queue, one active at a time (RabbitMQ's single
active consumer, ``EVENT_SINGLE_ACTIVE_CONSUMER=1``), as on two hosts: when the
active one is killed the standby takes over within seconds, the log keeps each
event once in ``seq`` order, and no page misses, repeats or reorders one.

The shared RabbitMQ and MariaDB serve a queue and a database of the test's own;
only the consumers are killed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time

import pytest

from pulseboard.config import load_config
from pulseboard.events.topology import Topology

from .faults import PageClient, SteadyProducer, WebInstance, count, print_counts
from .pipeline import ConsumerProcess, EventLog, declared_topology, wait_for
from .servers import base_env, free_port, rabbitmqctl, run_cli, temporary_database
from .streaming import create_users, signed_in_session

MAIN, SIDE = "market.ticks", "system.metrics"
NODE = "rabbit@localhost"


@pytest.fixture(scope="module")
def site(tmp_path_factory, rabbitmq_url, mysql_server):
    tmp = tmp_path_factory.mktemp("failover")
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(temporary_database(mysql_server))
        port = free_port()
        env = base_env(
            APP_SLUG=f"pbt-{secrets.token_hex(4)}",
            DATABASE_URL=database,
            BROKER_URL=rabbitmq_url,
            TMPDIR=str(tmp),
            PUBLIC_ORIGINS=f"http://127.0.0.1:{port}",
            AUTH_RATE_LIMIT="100000/minute",
            CONSUMER_BATCH_WAIT_MS="5",
            EVENT_SINGLE_ACTIVE_CONSUMER="1",
        )
        assert run_cli("db", "upgrade", env=env).returncode == 0
        create_users(env)
        config = load_config(env)
        topology = Topology.from_config(config)
        stack.enter_context(declared_topology(rabbitmq_url, topology))
        web = WebInstance(env, port, tmp)
        web.start()
        stack.callback(web.stop)
        # The first to register is the active one; the second waits as its standby.
        consumers = []
        stack.callback(lambda: [consumer.stop() for consumer in consumers])
        for name in ("a", "b"):
            consumers.append(ConsumerProcess(env, tmp / f"consumer-{name}.log"))
            consumers[-1].wait_connected()
        log = EventLog(database)
        stack.callback(log.close)
        yield {
            "config": config,
            "url": web.url,
            "consumers": consumers,
            "log": log,
            "queue": topology.queue.name,
        }


def consumer_states(queue: str) -> list[str]:
    """``active`` of each consumer on ``queue``, as RabbitMQ reports it: true or false."""
    lines = rabbitmqctl(NODE, "list_consumers", "-p", "/", "queue_name", "active").splitlines()
    return sorted(line.split()[1] for line in lines if line.split()[:1] == [queue])


def test_the_standby_consumer_takes_over_and_no_page_notices(site):
    assert consumer_states(site["queue"]) == ["false", "true"], "one active, one standby"
    url, log = site["url"], site["log"]
    pages = {
        "websocket": PageClient(
            url, signed_in_session(url, "bob@example.com"), "websocket", [MAIN]
        ),
        "polling, two topics": PageClient(
            url, signed_in_session(url, "bob@example.com"), "polling", [MAIN, SIDE]
        ),
    }
    try:
        start = max((seq for seq, *_ in log.rows()), default=0)
        producer = SteadyProducer(site["config"], 1500, 150, MAIN, SIDE)
        producer.start()
        time.sleep(3)
        active = site["consumers"][0]
        stored = log.count()
        os.killpg(active.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        active.process.wait(10)
        wait_for(lambda: log.count() > stored + 10, 30, message="the standby stores events")
        takeover = time.monotonic() - killed
        assert consumer_states(site["queue"]) == ["true"], "the standby is the active one now"
        producer.join(timeout=60)
        assert not producer.is_alive() and producer.error is None, producer.error
        wait_for(
            lambda: len([r for r in log.rows() if r[0] > start]) >= len(producer.confirmed),
            60,
            message="every confirmed event stored",
        )
        expected = {MAIN: [], SIDE: []}
        for seq, _, topic in log.rows():
            if seq > start:
                expected[topic].append(seq)
        # Each confirmed event once in the log, whatever the killed consumer held unacknowledged.
        assert sum(map(len, expected.values())) == len(producer.confirmed)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: all(count(n, p, expected).missing == 0 for n, p in pages.items()), 60)
        counts = [count(name, page, expected) for name, page in pages.items()]
        print_counts(f"active consumer SIGKILL; events flow again after {takeover:.2f} s", counts)
        assert all(
            (c.missing, c.duplicated, c.out_of_order, c.holes) == (0, 0, 0, 0) for c in counts
        )
        assert takeover < 10
    finally:
        for page in pages.values():
            page.close()
