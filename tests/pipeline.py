"""Helpers for event pipeline tests: an isolated pipeline, a consumer process, a Socket.IO
queue listener, waiting."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from kombu import Connection, Consumer, Exchange, Producer, Queue
from sqlalchemy import create_engine, text

from pulseboard.config import load_config
from pulseboard.events.envelope import new_envelope
from pulseboard.events.producer import Producer as EventProducer
from pulseboard.events.producer import PublishError
from pulseboard.events.topology import Topology

from .servers import PROJECT_ROOT, base_env, run_cli, stop


@contextlib.contextmanager
def declared_topology(broker_url: str, topology):
    """Declare a test's own exchanges and queues on the real broker; delete them after."""
    with Connection(broker_url) as connection:
        topology.declare(connection.default_channel)
    try:
        yield topology
    finally:
        with Connection(broker_url) as connection:
            channel = connection.default_channel
            for queue in (topology.queue, topology.dead_letter_queue):
                channel.queue_delete(queue.name)
            for exchange in (topology.exchange, topology.dead_letter_exchange):
                channel.exchange_delete(exchange.name)


def drain_queue(broker_url: str, queue) -> list:
    """Take every message waiting in ``queue`` (acknowledged), oldest first."""
    with Connection(broker_url) as connection:
        bound = queue.bind(connection.default_channel)
        messages = []
        while (message := bound.get(no_ack=True)) is not None:
            messages.append(message)
        return messages


def wait_for(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{message} not reached within {timeout}s")


class EventLog:
    """Read the event log straight from the database, as an operator would."""

    def __init__(self, url: str):
        self.engine = create_engine(url, pool_pre_ping=True)

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM events")).scalar()

    def newest_seq(self, topic: str) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                text("SELECT COALESCE(MAX(seq), 0) FROM events WHERE topic = :topic"),
                {"topic": topic},
            ).scalar()

    def rows(self) -> list[tuple[int, str, str]]:
        with self.engine.connect() as connection:
            return [
                tuple(row)
                for row in connection.execute(
                    text("SELECT seq, event_id, topic FROM events ORDER BY seq")
                )
            ]

    def close(self) -> None:
        self.engine.dispose()


class ConsumerProcess:
    """``python -m pulseboard events consume`` in its own session, output kept.

    ``prefix`` goes before the command (``ip netns exec HOST``: on another host)."""

    def __init__(self, env: dict[str, str], log_path: Path, prefix: tuple[str, ...] = ()):
        self.log_path = log_path
        self.log = open(log_path, "a+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "pulseboard", "events", "consume"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def wait_connected(self, timeout: float = 30, times: int = 1) -> None:
        wait_for(
            lambda: self.output().count("connected; consuming") >= times or self._died(),
            timeout,
            message="consumer connected",
        )
        assert self.process.poll() is None, self.output()

    def _died(self) -> bool:
        return self.process.poll() is not None

    def stop(self) -> None:
        stop(self.process)
        self.log.close()


class SocketIOListener:
    """A real listener on Socket.IO's fanout exchange: what every web instance would get."""

    def __init__(self, broker_url: str, channel: str):
        self.messages: list[dict] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._queue = Queue(
            f"test-listener.{channel}",
            Exchange(channel, type="fanout", durable=False),
            durable=False,
            exclusive=True,
        )
        self._thread = threading.Thread(target=self._listen, args=(broker_url,), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "listener could not connect"

    def _listen(self, broker_url: str) -> None:
        # Raw bodies: python-socketio publishes its JSON as text/plain.
        with (
            Connection(broker_url) as connection,
            Consumer(connection, [self._queue], on_message=self._on_message),
        ):
            self._ready.set()
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=0.2)

    def _on_message(self, message) -> None:
        self.messages.append(json.loads(message.body))
        message.ack()

    def events(self) -> list[dict]:
        """Every event emitted to /stream, in the order the messages came."""
        return [
            event
            for message in self.messages
            if message.get("method") == "emit" and message.get("event") == "events"
            for event in message["data"][0]
        ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Pipeline:
    """One isolated pipeline: its own slug (so its own queues) and its own database."""

    def __init__(self, mysql_url: str, rabbitmq_url: str, tmp_path, **settings: str):
        self.slug = f"pbt-{secrets.token_hex(4)}"
        self.broker_url = rabbitmq_url
        self.env = base_env(
            APP_SLUG=self.slug,
            DATABASE_URL=mysql_url,
            BROKER_URL=rabbitmq_url,
            TMPDIR=str(tmp_path),
            CONSUMER_BATCH_WAIT_MS="20",
            **settings,
        )
        migrated = run_cli("db", "upgrade", env=self.env)
        assert migrated.returncode == 0, migrated.stderr
        self.config = load_config(self.env)
        self.topology = Topology.from_config(self.config)
        self.log = EventLog(mysql_url)
        self.tmp_path = tmp_path
        self.consumers: list[ConsumerProcess] = []
        self._declared = declared_topology(rabbitmq_url, self.topology)
        self._declared.__enter__()

    def producer(self) -> EventProducer:
        return EventProducer.from_config(self.config)

    def start_consumer(self) -> ConsumerProcess:
        consumer = ConsumerProcess(self.env, self.tmp_path / f"consumer-{len(self.consumers)}.log")
        self.consumers.append(consumer)
        consumer.wait_connected()
        return consumer

    def publish_raw(self, body: bytes, routing_key: str = "market.ticks") -> None:
        with Connection(self.broker_url) as connection:
            Producer(connection).publish(
                body,
                exchange=self.topology.exchange,
                routing_key=routing_key,
                content_type="application/json",
                content_encoding="binary",
                delivery_mode=2,
            )

    def dead_letters(self) -> list:
        return drain_queue(self.broker_url, self.topology.dead_letter_queue)

    def close(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        self.log.close()
        self._declared.__exit__(None, None, None)


def publish_stream(
    pipeline: Pipeline, count: int, prefix: str, chunk: int | None = None
) -> list[str]:
    """Publish ``count`` events with known ids, in order, with broker confirms.

    With ``chunk``, ``chunk`` events every 50 ms, so that the stream outlasts a
    broker restart; a chunk the broker did not confirm (it was down) is sent
    again with the same ids, as a producer must."""
    envelopes = [
        replace(new_envelope("market.ticks", "tick", {"n": n}, key="ACME"), id=f"{prefix}-{n:05d}")
        for n in range(count)
    ]
    producer = pipeline.producer()
    try:
        if chunk is None:
            return producer.publish_envelopes(envelopes)
        for start in range(0, count, chunk):
            deadline = time.monotonic() + 60
            while True:
                try:
                    producer.publish_envelopes(envelopes[start : start + chunk])
                    break
                except PublishError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            time.sleep(0.05)
        return [envelope.id for envelope in envelopes]
    finally:
        producer.close()


def assert_log_holds_exactly(pipeline: Pipeline, ids: list[str]) -> None:
    rows = pipeline.log.rows()
    stored = [event_id for _, event_id, _ in rows]
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert set(stored) == set(ids), f"missing: {sorted(set(ids) - set(stored))[:10]}"
    seqs = [seq for seq, _, _ in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
