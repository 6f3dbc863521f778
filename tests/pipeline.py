"""Helpers for event pipeline tests: a consumer process, a Socket.IO queue listener, waiting."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from kombu import Connection, Consumer, Exchange, Queue
from sqlalchemy import create_engine, text

from .servers import PROJECT_ROOT, stop


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
    """``python -m pulseboard events consume`` in its own session, output kept."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "a+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pulseboard", "events", "consume"],
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
