"""A RabbitMQ restart in the middle of a stream loses nothing at the client.

While the broker restarts, the consumer may reconnect first and emit its
backlog into Socket.IO's fan-out before the web instance has its queue back:
those messages go nowhere, and the sockets, still connected, never replay.
The instance's hole repair delivers them from the log.  Counted where the
promise is made: at each client (WebSocket, long-polling, a page on two
topics), against the event log.

The broker is a private RabbitMQ node of this test (own name, ports and data),
restarted with ``stop_app``/``start_app``; the shared one is never touched.
"""

from __future__ import annotations

import contextlib
import threading
import time
from itertools import pairwise

from pulseboard.events.producer import Producer, PublishError

from .pipeline import EventLog, wait_for
from .servers import free_port, private_rabbitmq, rabbitmqctl
from .streaming import StreamClient, rabbitmq_site, signed_in_session

RATE = 150  # events a second on the main topic, a tenth of that on the side topic
SECONDS = 10
OUTAGE_SECONDS = 4
MAIN, SIDE = "market.ticks", "system.metrics"


class SteadyProducer(threading.Thread):
    """Publishes at a steady rate with confirms, retrying an event until the broker takes it."""

    def __init__(self, config):
        super().__init__(daemon=True)
        self.producer = Producer.from_config(config)
        self.confirmed: list[str] = []
        self.failures = 0

    def run(self) -> None:
        started = time.monotonic()
        for n in range(RATE * SECONDS):
            topic = SIDE if n % 10 == 9 else MAIN
            deadline = time.monotonic() + 30
            while True:
                try:
                    self.confirmed.append(self.producer.publish(topic, "tick", {"n": n}))
                    break
                except PublishError:
                    self.failures += 1
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            time.sleep(max(0.0, started + (n + 1) / RATE - time.monotonic()))
        self.producer.close()


def test_a_broker_restart_mid_stream_loses_nothing_at_any_client(tmp_path, mysql_server, clients):
    with contextlib.ExitStack() as stack:
        broker_url, node = stack.enter_context(private_rabbitmq())
        site = stack.enter_context(rabbitmq_site(tmp_path, broker_url, mysql_server, [free_port()]))
        url = site["urls"][0]
        pages = {
            "websocket": ("websocket", [MAIN]),
            "polling": ("polling", [MAIN]),
            "two topics": ("websocket", [MAIN, SIDE]),
        }
        for name, (transport, topics) in pages.items():
            client = StreamClient(url, signed_in_session(url, "bob@example.com"), transport)
            assert client.call("subscribe", {"topics": topics})["ok"]
            clients.append(client)
            pages[name] = (client, topics)

        producer = SteadyProducer(site["config"])
        producer.start()
        time.sleep(SECONDS / 3)
        rabbitmqctl(node, "stop_app")
        # Down long enough for the web instance's listener to back off past the
        # consumer's: the consumer then emits the backlog into a fan-out with no
        # queue of the instance's, as after a real restart.
        time.sleep(OUTAGE_SECONDS)
        rabbitmqctl(node, "start_app")
        producer.join(timeout=SECONDS + 60)
        assert not producer.is_alive()

        log = EventLog(site["env"]["DATABASE_URL"])
        stack.callback(log.close)
        wait_for(lambda: log.count() >= len(producer.confirmed), 60, message="all stored")
        expected = {topic: [] for topic in (MAIN, SIDE)}
        for seq, event_id, topic in log.rows():
            expected[topic].append((seq, event_id))

        def complete(client, topics) -> bool:
            wanted = sum(len(expected[topic]) for topic in topics)
            return len({event["seq"] for event in client.events}) >= wanted

        # Up to 30 s for the last events (and any repair) to arrive; then count.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: all(complete(c, t) for c, t in pages.values()), 30)

    report = []
    for name, (client, topics) in pages.items():
        seqs = [event["seq"] for event in client.events]
        wanted = sorted(seq for topic in topics for seq, _ in expected[topic])
        missing = len(set(wanted) - set(seqs))
        duplicated = len(seqs) - len(set(seqs))
        out_of_order = sum(
            1
            for topic in topics
            for a, b in pairwise([e["seq"] for e in client.events if e["topic"] == topic])
            if b < a
        )
        report.append((name, len(wanted), len(set(seqs)), missing, duplicated, out_of_order))
    print("\nclient        expected received missing duplicated out-of-order")
    for row in report:
        print("{:<13} {:>8} {:>8} {:>7} {:>10} {:>12}".format(*row))
    print(f"producer retries during the restart: {producer.failures}")
    assert all(row[3:] == (0, 0, 0) for row in report), report
