"""The Socket.IO message queue on RabbitMQ, used from many threads of one process.

python-socketio shares one publishing connection between every greenlet (or
thread) of a process; two publishes at once on one AMQP socket used to break it
(seen in a reconnect storm). Here 16 threads publish at once and every message
must arrive whole, with no error.
"""

from __future__ import annotations

import json
import secrets
import threading
import time

from kombu import Connection, Exchange, Queue

from pulseboard.events.socketio_queue import KombuManager

from .conftest import RABBITMQ_URL

THREADS = 16
EACH = 100


def test_publishes_from_many_threads_at_once_all_arrive_whole():
    channel = f"pbt-queue-{secrets.token_hex(4)}"
    manager = KombuManager(RABBITMQ_URL, channel=channel, write_only=True)
    received: list[dict] = []
    with Connection(RABBITMQ_URL) as connection:
        exchange = Exchange(channel, type="fanout", durable=False)
        queue = Queue(f"{channel}.check", exchange, exclusive=True, auto_delete=True)
        queue(connection.default_channel).declare()
        errors: list[BaseException] = []
        start = threading.Barrier(THREADS)

        def publish(thread: int) -> None:
            start.wait()
            try:
                for n in range(EACH):
                    manager.publish_message({"thread": thread, "n": n, "pad": "x" * 2000})
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=publish, args=(i,), daemon=True) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not [thread for thread in threads if thread.is_alive()], "publishes hung"
        assert errors == []

        def on_message(body, message):
            received.append(json.loads(body) if isinstance(body, str | bytes) else body)
            message.ack()

        with connection.Consumer(queue, callbacks=[on_message], accept=["text/plain", "json"]):
            while len(received) < THREADS * EACH:
                connection.drain_events(timeout=10)
        connection.default_channel.exchange_delete(channel)
    manager.publisher_connection.release()
    assert sorted((m["thread"], m["n"]) for m in received) == sorted(
        (t, n) for t in range(THREADS) for n in range(EACH)
    )
