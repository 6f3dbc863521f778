"""Engine.IO's WebSocket writer, as a greenlet only while something waits to be written.

Engine.IO starts, for each WebSocket, a writer task that blocks on the
socket's outgoing queue for the connection's whole life: under gevent a
greenlet per idle connection, with its saved stack and its own Python frame
stack, several KB each.  Most sends never queue (``LeanWebSocket.send_now``
writes them at once); what does queue, and the pings, is written here by a
greenlet started when a packet is put on the queue and ended once it is empty.

It does what Engine.IO's writer does, in the same order: each packet is sent
as it comes off the queue; the stop signal (``None``), or a send that fails,
closes the WebSocket and ends the writing for good.  Engine.IO's handler joins
it as it joins its own writer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .internals import NOTHING_QUEUED, queue_is_empty, take_queued, wake_on_put

log = logging.getLogger(__name__)


class IdleWriter:
    """The writer of one Engine.IO socket's WebSocket, in place of Engine.IO's task."""

    __slots__ = ("eio_socket", "start_task", "stopped", "task", "websocket")

    def __init__(self, eio_socket, websocket, start_task: Callable):
        self.eio_socket = eio_socket
        self.websocket = websocket
        self.start_task = start_task  # the server's start_background_task
        self.task = None  # the greenlet writing, while there is something to write
        self.stopped = False
        wake_on_put(eio_socket, self.wake)
        if not queue_is_empty(eio_socket):  # queued before the WebSocket was ready (an upgrade)
            self.wake()

    def wake(self) -> None:
        """A packet was queued: write it, unless a writer is at it already."""
        if self.task is None and not self.stopped:
            self.task = self.start_task(self._write_queued)

    def _write_queued(self) -> None:
        try:
            while (pkt := take_queued(self.eio_socket)) is not NOTHING_QUEUED:
                if pkt is None or not self._send(pkt):
                    self.stopped = True
                    self.websocket.close()
                    return
        finally:
            self.task = None

    def _send(self, pkt) -> bool:
        try:
            self.websocket.send(pkt.encode())
        except Exception as error:  # a broken connection: its reader finds out and ends it
            log.info("socket %s: write failed (%s); closing", self.eio_socket.sid, error)
            return False
        return True

    def join(self, timeout=None) -> None:
        """Wait for the packets being written (the stop signal among them) to be done."""
        task = self.task
        if task is not None:
            task.join(timeout)
