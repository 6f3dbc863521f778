"""Back-pressure: a client that stopped reading is dropped, not buffered for without end.

Engine.IO queues a connection's outgoing packets without limit, so a client
that stopped reading (a frozen tab, a dead mobile link) would hold every event
sent to it.  Before each write, delivery asks whether the socket's queue is past
its limits; a stuck socket is closed and its queue freed.  The client
reconnects and catches up from the event log, so nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from engineio.packet import Packet

from .internals import discard_queued, engineio_socket, queue_length, waiting_packets

# What may wait for one client before it counts as stuck.  By count: at busy-stream
# batch sizes, many seconds of events; by size: a few large batches.
MAX_QUEUED_PACKETS = 256
MAX_QUEUED_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class QueueLimits:
    packets: int = MAX_QUEUED_PACKETS
    bytes: int = MAX_QUEUED_BYTES

    def is_stuck(self, eio_socket) -> bool:
        """Whether more waits for this socket than the limits allow."""
        if queue_length(eio_socket) > self.packets:
            return True
        return queued_bytes(waiting_packets(eio_socket)) > self.bytes


def queued_bytes(packets: list) -> int:
    """What the queued packets carry.  A packet without a text or binary body (a PING,
    an OPEN's dict) and the writer's stop signal (``None``) count nothing."""
    return sum(
        len(p.data)
        for p in packets
        if isinstance(p, Packet) and isinstance(p.data, str | bytes | bytearray)
    )


def queued_packets(server, eio_sid: str) -> int | None:
    """Packets waiting for a connection to take them; None once it is closed."""
    eio_socket = engineio_socket(server, eio_sid)
    if eio_socket is None or eio_socket.closed:
        return None
    return queue_length(eio_socket)


def drop(eio_socket) -> None:
    """Close the connection at once and free what it would never have read."""
    eio_socket.close(wait=False, abort=True)  # also runs the namespace's disconnect handler
    discard_queued(eio_socket)
