"""Engine.IO's WebSocket writer as a task only while packets wait (stream/idle_writer.py).

An idle WebSocket keeps no writer greenlet: a packet put on its queue starts
one, which writes everything queued, in order, and ends when the queue is
empty.  The stop signal, or a send that fails, closes the WebSocket for good.
"""

from __future__ import annotations

import engineio
import engineio.socket
import gevent
import gevent.queue
import pytest
from engineio import packet as eio_packet

from pulseboard.stream import internals
from pulseboard.stream.idle_writer import IdleWriter
from pulseboard.stream.internals import LibraryInternalsMissing, WakingQueue, check_internals


class FakeWebSocket:
    def __init__(self, fail_on: str | None = None):
        self.sent: list[str] = []
        self.closed = False
        self.fail_on = fail_on

    def send(self, message) -> None:
        if message == self.fail_on:
            raise OSError("broken pipe")
        self.sent.append(message)

    def close(self) -> None:
        self.closed = True


class Tasks:
    """Starts nothing by itself: ``run()`` runs what was started, as the hub would."""

    def __init__(self):
        self.started: list = []

    def __call__(self, target):
        self.started.append(target)
        return "task"

    def run(self) -> None:
        while self.started:
            self.started.pop(0)()


@pytest.fixture
def eio_socket():
    server = engineio.Server(async_mode="threading")
    socket = engineio.socket.Socket(server, "idle-writer-test")
    socket.queue = WakingQueue()
    return socket


def message(text: str) -> eio_packet.Packet:
    return eio_packet.Packet(eio_packet.MESSAGE, text)


def test_an_idle_websocket_has_no_writer_task(eio_socket):
    tasks = Tasks()
    IdleWriter(eio_socket, FakeWebSocket(), tasks)
    assert tasks.started == []


def test_queued_packets_start_one_task_that_writes_them_in_order_then_ends(eio_socket):
    tasks, websocket = Tasks(), FakeWebSocket()
    writer = IdleWriter(eio_socket, websocket, tasks)
    for text in ("a", "b", "c"):
        eio_socket.send(message(text))
    assert len(tasks.started) == 1  # one writer for the three
    tasks.run()
    assert websocket.sent == ["4a", "4b", "4c"]
    assert writer.task is None and not websocket.closed
    eio_socket.send(message("d"))  # the next packet starts a writer again
    tasks.run()
    assert websocket.sent[-1] == "4d"


def test_packets_queued_before_the_websocket_was_ready_are_written(eio_socket):
    eio_socket.send(message("early"))
    tasks, websocket = Tasks(), FakeWebSocket()
    IdleWriter(eio_socket, websocket, tasks)
    tasks.run()
    assert websocket.sent == ["4early"]


def test_the_stop_signal_closes_the_websocket_and_nothing_is_written_after(eio_socket):
    tasks, websocket = Tasks(), FakeWebSocket()
    IdleWriter(eio_socket, websocket, tasks)
    eio_socket.send(message("last"))
    eio_socket.close(wait=False, abort=True)  # queues the stop signal
    eio_socket.queue.put(message("late"))
    tasks.run()
    assert websocket.sent == ["4last"] and websocket.closed
    eio_socket.queue.put(message("later"))
    assert tasks.started == []


def test_a_failed_send_closes_the_websocket_and_ends_the_writing(eio_socket):
    tasks, websocket = Tasks(), FakeWebSocket(fail_on="4b")
    writer = IdleWriter(eio_socket, websocket, tasks)
    for text in ("a", "b", "c"):
        eio_socket.send(message(text))
    tasks.run()
    assert websocket.sent == ["4a"] and websocket.closed and writer.stopped


def test_engineio_writer_tasks_are_recognised():
    server = engineio.Server(async_mode="threading")
    socket = engineio.socket.Socket(server, "writer-check")
    started = []
    server.start_background_task = lambda target, *args: started.append(target) or Joined()
    socket.queue.put(None)  # the writer's stop, so the handler's reader ends at once
    socket._websocket_handler(ClosedWebSocket())
    assert internals.is_writer_task(started[0])
    assert internals.writer_task_parts(started[0])[0] is socket


def test_a_missing_writer_task_stops_the_start(monkeypatch):
    monkeypatch.setattr(internals, "WRITER_CODE", None)
    with pytest.raises(LibraryInternalsMissing, match=r"python-engineio \S+: .*writer"):
        check_internals()


class Joined:
    def join(self) -> None:
        pass


class ClosedWebSocket:
    def wait(self):
        return None

    def close(self) -> None:
        pass


def test_the_queue_is_a_deque_until_someone_waits():
    queue = WakingQueue()
    queue.put("a")
    assert (queue.qsize(), queue.get_nowait(), queue.empty()) == (1, "a", True)
    with pytest.raises(gevent.queue.Empty):
        queue.get_nowait()


def test_a_waiting_get_takes_the_next_packet_or_times_out():
    queue = WakingQueue()
    gevent.spawn_later(0.01, queue.put, "late")
    assert queue.get(timeout=1) == "late"
    with pytest.raises(gevent.queue.Empty):
        queue.get(timeout=0.01)


def test_join_returns_once_every_packet_taken_is_done():
    queue = WakingQueue()
    queue.put("a")
    queue.put(None)

    def take_all():
        while not queue.empty():
            queue.get_nowait()
            queue.task_done()

    gevent.spawn_later(0.01, take_all)
    assert queue.join(timeout=1) is True and queue.unfinished_tasks == 0
