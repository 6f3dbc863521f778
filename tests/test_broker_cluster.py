"""A RabbitMQ cluster of three nodes: BROKER_URL names them all, and losing one loses nothing.

Three private nodes (names, ports and folders of their own; the shared node is
never touched) are started at once, clustered, and stopped at the end whatever
happens.  With several nodes in BROKER_URL the stream and dead-letter queues are
quorum queues: a copy on every node, so the queue outlives the node that leads it.

The fault test streams events with publisher confirms through two web instances
and the consumer while clients that behave like the page watch (WebSocket on
each instance, long-polling, a page on two topics), stops the node leading the
stream queue, and asserts per client: missing 0, duplicated 0, out of order 0.
It prints the longest pause in arrivals at each client: how long the stream stood
still while producers, the consumer and the web instances moved to another node.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time

import pytest
from kombu import Connection, Consumer

from pulseboard.config import load_config
from pulseboard.events import dead_letters
from pulseboard.events.envelope import new_envelope
from pulseboard.events.producer import Producer
from pulseboard.events.topology import Topology

from .cluster import rabbit_cluster
from .faults import SteadyProducer, TimedPageClient, count, print_counts
from .pipeline import EventLog, drain_queue, wait_for
from .servers import free_port, rabbitmqctl
from .streaming import rabbitmq_site, signed_in_session

pytestmark = pytest.mark.rabbitmq

MAIN, SIDE = "market.ticks", "system.metrics"
NODES = 3


@pytest.fixture(scope="module")
def cluster():
    with rabbit_cluster("pbc", NODES) as nodes:
        yield nodes


def test_several_nodes_in_broker_url_make_the_queues_quorum_queues(cluster):
    config = load_config({"APP_ENV": "test", "BROKER_URL": cluster.url})
    assert config["EVENT_QUEUE_TYPE"] == "quorum"
    topology = Topology(f"pbt-{secrets.token_hex(4)}", quorum=True)
    producer = Producer(cluster.url, topology)
    try:
        producer.publish(MAIN, "tick", {"n": 1})
    finally:
        producer.close()
    listing = rabbitmqctl(cluster.nodes[1].node, "list_queues", "name", "type", "members")
    types = {line.split("\t")[0]: line.split("\t")[1] for line in listing.splitlines()}
    assert types[topology.queue.name] == "quorum"
    assert types[topology.dead_letter_queue.name] == "quorum"
    assert all(node.node in listing for node in cluster.nodes)  # a copy on every node


def test_a_poison_message_is_dead_lettered_after_the_delivery_limit(cluster):
    topology = Topology(f"pbt-{secrets.token_hex(4)}", quorum=True, delivery_limit=2)
    producer = Producer(cluster.url, topology)
    try:
        [event_id] = producer.publish_envelopes([new_envelope(MAIN, "tick", {"n": 1})])
    finally:
        producer.close()
    deliveries = 0
    # A consumer that dies holding the message, again and again: its connection
    # closes without an acknowledgement and the queue takes the message back.
    while True:
        with Connection(cluster.url) as connection:
            message = topology.queue.bind(connection.default_channel).get(no_ack=False)
        if message is None:
            break
        deliveries += 1
        assert deliveries <= 10, "the delivery limit did not stop the redeliveries"
    letters = dead_letters.peek(cluster.url, topology, timeout=5)
    assert [letter.message_id for letter in letters] == [event_id]
    assert "delivery limit" in letters[0].reason
    [message] = drain_queue(cluster.url, topology.dead_letter_queue)
    assert message.headers["x-first-death-reason"] == "delivery_limit"
    print(f"\ndead-lettered after {deliveries} deliveries (EVENT_DELIVERY_LIMIT=2)")


def test_a_standby_consumer_takes_over_a_single_active_consumer_quorum_queue(cluster):
    topology = Topology(f"pbt-{secrets.token_hex(4)}", quorum=True, single_active_consumer=True)
    got: dict[str, list] = {"active": [], "standby": []}
    with contextlib.ExitStack() as stack:
        connections = {}
        for name in got:
            connection = stack.enter_context(Connection(cluster.url))
            topology.declare(connection.default_channel)
            Consumer(connection, [topology.queue], on_message=got[name].append).consume()
            connections[name] = connection
        producer = Producer(cluster.url, topology)
        stack.callback(producer.close)

        def deliver(event_id: str, to: str) -> None:
            def arrived():
                for connection in connections.values():
                    with contextlib.suppress(TimeoutError):
                        connection.drain_events(timeout=0.05)
                return any(m.properties["message_id"] == event_id for m in got[to])

            wait_for(arrived, 10, interval=0, message=f"{event_id} at the {to} consumer")

        first = producer.publish(MAIN, "tick", {"n": 1})
        deliver(first, to="active")
        got["active"][0].ack()
        connections.pop("active").release()  # the active consumer dies
        second = producer.publish(MAIN, "tick", {"n": 2})
        deliver(second, to="standby")
        assert [m.properties["message_id"] for m in got["standby"]] == [second]


def test_stopping_the_node_that_leads_the_stream_queue_loses_no_event(
    cluster, mysql_server, tmp_path
):
    ports = [free_port(), free_port()]
    with rabbitmq_site(
        tmp_path, cluster.url, mysql_server, ports, CONSUMER_RETRY_MAX_MS="2000"
    ) as site:
        config = site["config"]
        assert config["EVENT_QUEUE_TYPE"] == "quorum"
        first, second = site["urls"]
        pages = {
            name: TimedPageClient(url, signed_in_session(url, "bob@example.com"), transport, topics)
            for name, (url, transport, topics) in {
                "websocket A": (first, "websocket", [MAIN]),
                "websocket B": (second, "websocket", [MAIN]),
                "polling B": (second, "polling", [MAIN]),
                "two topics A": (first, "websocket", [MAIN, SIDE]),
            }.items()
        }
        log = EventLog(site["env"]["DATABASE_URL"])
        try:
            events, rate = 2000, 150
            producer = SteadyProducer(config, events, rate, MAIN, SIDE)
            started = time.monotonic()
            producer.start()
            time.sleep(events / rate / 3)
            leader = cluster.leader_of(Topology.from_config(config).queue.name)
            stopped_at = time.monotonic()
            stopping = threading.Thread(target=leader.stop)
            stopping.start()
            producer.join(timeout=events / rate + 120)
            stopping.join(60)
            assert not producer.is_alive() and producer.error is None, producer.error
            wait_for(
                lambda: log.count() >= len(producer.confirmed), 90, message="every event stored"
            )
            expected = {MAIN: [], SIDE: []}
            for seq, _, topic in log.rows():
                expected[topic].append(seq)
            assert log.count() == len(producer.confirmed)
            with contextlib.suppress(AssertionError):  # then count whatever arrived
                wait_for(
                    lambda: all(count(n, p, expected).missing == 0 for n, p in pages.items()), 60
                )
            ended = time.monotonic()
            counts = [count(name, page, expected) for name, page in pages.items()]
            print_counts(f"stopped {leader.node}, the stream queue's leader", counts)
            print(f"  producer retries: {producer.retries}")
            for name, page in pages.items():
                pause = page.longest_pause(stopped_at, ended)
                print(f"  {name:<13} longest pause in arrivals after the stop: {pause:.2f}s")
            print(f"  whole run: {ended - started:.1f}s")
            consumer_log = (tmp_path / "consumer.log").read_text()
            for line in consumer_log.splitlines():
                if "connected; consuming" in line or "broker connection lost" in line:
                    print(f"  consumer: {line.split(': ', 1)[1][:110]}")
            assert all((c.missing, c.duplicated, c.out_of_order) == (0, 0, 0) for c in counts)
        finally:
            log.close()
            for page in pages.values():
                page.close()
