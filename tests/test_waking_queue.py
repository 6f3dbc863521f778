"""An Engine.IO socket's outgoing queue under gevent (stream/internals.py WakingQueue):
what Engine.IO and delivery use of gevent's queue, holding nothing while nothing waits."""

from __future__ import annotations

import gevent
import pytest
from gevent.queue import Empty

from pulseboard.stream.internals import WakingQueue


def test_packets_come_out_in_order_and_an_emptied_queue_holds_nothing():
    queue = WakingQueue()
    assert queue.queue == () and queue.qsize() == 0 and queue.empty()
    for item in ("a", "b", None):
        queue.put(item)
    assert list(queue.queue) == ["a", "b", None] and queue.qsize() == 3
    assert [queue.get_nowait() for _ in range(3)] == ["a", "b", None]
    assert queue.queue == ()  # the deque is let go, not kept empty
    with pytest.raises(Empty):
        queue.get_nowait()


def test_each_put_wakes_the_writer():
    woken = []
    queue = WakingQueue()
    queue.waker = lambda: woken.append(queue.qsize())
    queue.put("a")
    queue.put("b")
    assert woken == [1, 2]


def test_a_get_waits_for_a_put_or_its_timeout():
    queue = WakingQueue()
    gevent.spawn_later(0.05, queue.put, "late")
    assert queue.get(timeout=2) == "late"
    with pytest.raises(Empty):
        queue.get(timeout=0.05)


def test_join_waits_until_every_packet_is_done():
    queue = WakingQueue()
    assert queue.join(timeout=0)
    queue.put("a")
    assert not queue.join(timeout=0.01)

    def finish() -> None:
        queue.get_nowait()
        queue.task_done()

    gevent.spawn_later(0.05, finish)
    assert queue.join(timeout=2)
    with pytest.raises(ValueError):
        queue.task_done()
