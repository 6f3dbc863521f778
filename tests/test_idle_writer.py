"""Engine.IO's WebSocket writer as a task only while packets wait (stream/idle_writer.py).

An idle WebSocket keeps no writer greenlet: a packet put on its queue starts
one, which writes everything queued, in order, and ends when the queue is
empty.  The stop signal, or a send that fails, closes the WebSocket for good.
"""

from __future__ import annotations

import engineio
import engineio.socket
import pytest
from engineio import packet as eio_packet

from pulseboard.stream.idle_writer import IdleWriter
from pulseboard.stream.internals import WakingQueue


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
