"""Listeners: plain HTTP streams (Server-Sent Events) that take a topic's batches.

Socket.IO sockets get their events through rooms; a Server-Sent Events stream
is a greenlet serving one HTTP response, so it registers here instead, and
``RoundDelivery.enqueue_events`` offers it every batch of its topics as the
batch arrives in this process.  Each listener owns a bounded queue: a client
that stops reading fills it, and then its stream is closed (``on_overflow``) and
its queue freed.  It resumes from the event log with Last-Event-ID, so closing
it loses nothing, and nothing here ever waits for a client.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Listener:
    """One stream's topics and the batches waiting for it."""

    def __init__(self, name: str, topics: set[str], limit: int):
        self.name = name  # for log lines
        self.topics = frozenset(topics)
        self.limit = limit
        self.overflowed = False
        # Called once, from the delivering greenlet, when the queue overflows.
        self.on_overflow: Callable[[], None] | None = None
        self._batches: queue.SimpleQueue[list[dict]] = queue.SimpleQueue()
        self._queued = 0  # events waiting
        self._lock = threading.Lock()

    def offer(self, batch: list[dict]) -> None:
        with self._lock:
            if self.overflowed:
                return
            if self._queued + len(batch) > self.limit:
                self.overflowed = True
            else:
                self._queued += len(batch)
        if not self.overflowed:
            self._batches.put(batch)
            return
        log.warning("stream %s: over %s events unread; closing it", self.name, self.limit)
        self._batches.put([])  # wake the stream, so it ends even when idle
        if self.on_overflow is not None:
            self.on_overflow()

    def take(self, timeout: float) -> list[dict] | None:
        """The next batch, or None when none came within ``timeout`` seconds."""
        try:
            batch = self._batches.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._queued -= len(batch)
        return batch


class Listeners:
    """This process's listeners by topic."""

    def __init__(self):
        self._by_topic: dict[str, set[Listener]] = {}
        self._lock = threading.Lock()

    def add(self, listener: Listener) -> None:
        with self._lock:
            for topic in listener.topics:
                self._by_topic.setdefault(topic, set()).add(listener)

    def remove(self, listener: Listener) -> None:
        with self._lock:
            for topic in listener.topics:
                found = self._by_topic.get(topic)
                if found is not None:
                    found.discard(listener)
                    if not found:
                        del self._by_topic[topic]

    def topics(self) -> set[str]:
        with self._lock:
            return set(self._by_topic)

    def count(self) -> int:
        with self._lock:
            return len(set().union(*self._by_topic.values())) if self._by_topic else 0

    def offer(self, topic: str, batch: list[dict]) -> None:
        """Hand ``batch`` (events of ``topic``) to each of its listeners; one listener's
        failure is its own."""
        with self._lock:
            found = list(self._by_topic.get(topic, ()))
        for listener in found:
            try:
                listener.offer(batch)
            except Exception:
                log.exception("stream %s: could not take a batch of %s", listener.name, topic)


listeners = Listeners()
