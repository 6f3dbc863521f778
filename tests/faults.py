"""Helpers for fault tests: a steady producer, a client that behaves like the page,
web instances that can be killed, and the per-client count of what arrived."""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import socketio

from pulseboard.events.envelope import new_envelope
from pulseboard.events.producer import Producer, PublishError

from .servers import PROJECT_ROOT, VENV_BIN, stop, wait_until_healthy


class SteadyProducer(threading.Thread):
    """Publishes ``count`` events at ``rate`` a second with confirms, one in ``side_every``
    on the side topic, retrying an event until the broker takes it.

    ``batch`` events go out together, confirmed as one (a quorum queue confirms
    after a majority of nodes wrote the event: one at a time, that round trip
    caps the rate well below a few hundred a second)."""

    def __init__(
        self, config, count: int, rate: float, main: str, side: str, side_every=10, pad=0, batch=1
    ):
        super().__init__(daemon=True)
        self.batch = batch
        self.pad = "x" * pad  # bytes of payload, to make a stream heavy
        self.producer = Producer.from_config(config)
        self.count, self.rate = count, rate
        self.main, self.side, self.side_every = main, side, side_every
        self.confirmed: list[str] = []
        self.stopped = threading.Event()  # set: no event after the one in hand
        self.retries = 0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self._publish_all()
        except Exception as error:  # reported by the test, not lost in a thread
            self.error = error
        finally:
            self.producer.close()

    def _publish_all(self) -> None:
        started = time.monotonic()
        for first in range(0, self.count, self.batch):
            if self.stopped.is_set():
                break
            # Built once: a retry sends the same ids, as a producer must. A publish whose
            # confirm was lost may still have been queued; the log keeps it once.
            envelopes = [
                self._envelope(n) for n in range(first, min(first + self.batch, self.count))
            ]
            deadline = time.monotonic() + 60
            while True:
                try:
                    self.confirmed.extend(self.producer.publish_envelopes(envelopes))
                    break
                except PublishError:
                    self.retries += 1
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            sent = first + len(envelopes)
            time.sleep(max(0.0, started + sent / self.rate - time.monotonic()))

    def _envelope(self, n: int):
        topic = self.side if n % self.side_every == self.side_every - 1 else self.main
        payload = {"n": n, "pad": self.pad} if self.pad else {"n": n}
        return new_envelope(topic, "tick", payload)


class InOrder:
    """Handles a client's incoming messages one after another, in the order they came.

    python-socketio's client hands each message to a thread of its own, so two
    messages may be handled in either order: a replay page could be read before
    the page ahead of it, and a client would see a hole that is not there and a
    duplicate when it fills it. A page's script handles them in order; so does
    this, by taking the tasks Engine.IO starts for messages (and only those) onto
    one thread. ``handled`` shows it is in the path: a client checks it."""

    def __init__(self, eio):
        self.eio = eio
        self.start_thread = eio.start_background_task
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.handled = 0
        eio.start_background_task = self.start_task
        threading.Thread(target=self._run, daemon=True).start()

    def start_task(self, target, *args, **kwargs):
        if target == self.eio.handlers.get("message"):
            self.tasks.put((target, args))
            return None
        return self.start_thread(target, *args, **kwargs)

    def _run(self) -> None:
        while (task := self.tasks.get()) is not None:
            target, args = task
            self.handled += 1
            try:
                target(*args)
            except Exception:  # as the library's own thread would: logged, not fatal
                self.eio.logger.exception("message handler error")

    def close(self) -> None:
        self.tasks.put(None)


class PageClient:
    """A Socket.IO client that does what static/js/stream.js does: it reconnects by
    itself, subscribes again with each topic's own position (the highest seq seen on
    it, else the highest seen on any), and keeps every event once, per topic by seq.

    Like the page it checks each event's ``prev`` (the event before it on its
    topic) and asks the server to ``fill`` a hole; it counts the holes, and what a
    page would hide: an event received twice, one that arrives after a later one.
    Like the page it handles messages in the order they came (``InOrder``).
    ``client_options`` go to ``socketio.Client`` (``websocket_extra_options``…)."""

    def __init__(
        self,
        url: str,
        browser: requests.Session,
        transport: str,
        topics: list[str],
        **client_options,
    ):
        self.url, self.transport, self.topics = url, transport, topics
        self.browser = browser
        self.seen: dict[str, int] = {}
        self.received: dict[str, set[int]] = {topic: set() for topic in topics}
        self.duplicated = 0
        self.out_of_order = 0
        self.holes = 0
        self.connects = 0
        self.subscribed = threading.Event()
        self.lock = threading.Lock()  # the handler thread and fill answers both count
        self.client = socketio.Client(
            reconnection=True,
            reconnection_delay=0.2,
            reconnection_delay_max=1,
            http_session=browser,
            **client_options,
        )
        self.in_order = InOrder(self.client.eio)
        self.client.on("connect", self._on_connect, namespace="/stream")
        self.client.on("events", self._on_events, namespace="/stream")
        self.client.connect(url, namespaces=["/stream"], transports=[transport], wait_timeout=10)
        assert self.subscribed.wait(10), "the first subscribe was not answered"
        assert self.in_order.handled, "messages are not handled in order: see InOrder"

    def _on_connect(self) -> None:
        self.connects += 1
        # Not on the client's reading thread: the answer is read there.
        threading.Thread(target=self._subscribe, daemon=True).start()

    def _subscribe(self) -> None:
        request: dict = {"topics": self.topics}
        if self.seen:
            anywhere = max(self.seen.values())
            request["since"] = {topic: self.seen.get(topic, anywhere) for topic in self.topics}
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            ack = self.client.call("subscribe", request, namespace="/stream", timeout=30)
            if ack and ack.get("ok"):
                self.subscribed.set()

    def _on_events(self, batch: list[dict]) -> None:
        with self.lock:
            self._count(batch)

    def _count(self, batch: list[dict]) -> None:
        for event in batch:
            topic, seq = event["topic"], event["seq"]
            last = self.seen.get(topic, 0)
            if last and event.get("prev", 0) > last and seq > last:
                self.holes += 1
                threading.Thread(target=self._fill, args=(topic, last, seq), daemon=True).start()
            if seq in self.received.setdefault(topic, set()):
                self.duplicated += 1
                continue
            if seq < self.seen.get(topic, 0):
                self.out_of_order += 1
            self.received[topic].add(seq)
            self.seen[topic] = max(self.seen.get(topic, 0), seq)

    def _fill(self, topic: str, after: int, before: int) -> None:
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            ack = self.client.call(
                "fill", {"topic": topic, "after": after, "before": before}, namespace="/stream"
            )
            if ack and ack.get("ok"):
                self._on_events(ack["events"])

    def go_offline(self) -> None:
        """Leave, as a tab that sleeps: no automatic reconnect until ``come_back``."""
        self.client.disconnect()
        self.subscribed.clear()

    def come_back(self) -> None:
        self.client.connect(
            self.url, namespaces=["/stream"], transports=[self.transport], wait_timeout=10
        )
        assert self.subscribed.wait(30), "the resubscribe was not answered"

    def close(self) -> None:
        self.client.disconnect()
        self.in_order.close()
        self.browser.close()


class TimedPageClient(PageClient):
    """A page client that also notes when each new event arrived."""

    def __init__(self, *args, **kwargs):
        self.arrivals: list[float] = []
        super().__init__(*args, **kwargs)

    def _count(self, batch: list[dict]) -> None:
        before = sum(map(len, self.received.values()))
        super()._count(batch)
        if sum(map(len, self.received.values())) > before:
            self.arrivals.append(time.monotonic())

    def longest_pause(self, start: float, end: float) -> float:
        times = [start, *(t for t in self.arrivals if start <= t <= end), end]
        return max(later - earlier for earlier, later in itertools.pairwise(times))


@dataclass
class Count:
    client: str
    expected: int
    received: int
    missing: int
    duplicated: int
    out_of_order: int
    holes: int


def count(name: str, client: PageClient, expected: dict[str, list[int]]) -> Count:
    wanted = {seq for topic in client.topics for seq in expected[topic]}
    got = {seq for topic in client.topics for seq in client.received.get(topic, ())}
    return Count(
        name,
        len(wanted),
        len(got & wanted),
        len(wanted - got),
        client.duplicated,
        client.out_of_order,
        client.holes,
    )


def print_counts(fault: str, counts: list[Count]) -> None:
    print(f"\n{fault}\n  client        expected received missing duplicated out-of-order holes")
    for c in counts:
        print(
            f"  {c.client:<13} {c.expected:>8} {c.received:>8} {c.missing:>7} "
            f"{c.duplicated:>10} {c.out_of_order:>12} {c.holes:>5}"
        )


class WebInstance:
    """``pulseboard.wsgi:app`` under gunicorn on a fixed port, to kill and start again."""

    def __init__(self, env: dict[str, str], port: int, log_dir: Path):
        self.env = {**env, "PORT": str(port)}
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"gunicorn-{port}.log"
        self.process: subprocess.Popen | None = None
        self.log = None

    def start(self, ready_timeout: float = 30, probe_timeout: float = 1) -> None:
        self._close_log()
        log = self.log = open(self.log_path, "a+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}"],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until_healthy(self.url, self.process, log, ready_timeout, probe_timeout)

    def kill(self) -> None:
        """SIGKILL to the whole process group: no clean shutdown, as in a crash."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
        self._close_log()

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
