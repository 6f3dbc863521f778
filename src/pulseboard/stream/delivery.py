"""Delivering batches to sockets, each filtered to what that socket asked for.

The consumer emits one ``events`` message per topic to the room
``topic:<topic>``.  A plain Socket.IO room emit would hand every member the
whole batch; this manager intercepts it and sends each socket only the events
its type and key filters accept, never one it already had, encoding each
distinct result once.  It also turns the ``pb:disconnect`` control message into
local disconnects on every instance, and drops sockets whose outgoing queue
has grown past ``MAX_QUEUED_PACKETS`` (a client that stopped reading) instead
of buffering for them without bound.
"""

from __future__ import annotations

import contextlib
import logging

import socketio
from engineio import packet as eio_packet
from socketio import packet

from ..events.emitter import EVENTS, NAMESPACE
from ..events.socketio_queue import KombuManager
from .state import registry

log = logging.getLogger(__name__)

DISCONNECT = "pb:disconnect"
NOTICE = "notice"
# What may wait for one client before it counts as stuck.  Engine.IO queues
# without limit, so a client that stopped reading would otherwise hold every
# event sent to it.  By count: at busy-stream batch sizes, many seconds of
# events; by size: a few large batches.
MAX_QUEUED_PACKETS = 256
MAX_QUEUED_BYTES = 4 * 1024 * 1024


class StreamDelivery(socketio.Manager):
    max_queued_packets = MAX_QUEUED_PACKETS
    max_queued_bytes = MAX_QUEUED_BYTES

    def emit(
        self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs
    ):
        room = to or room
        if namespace == NAMESPACE and isinstance(room, str) and callback is None:
            if event == EVENTS and room.startswith("topic:"):
                return self.deliver_events(room, data)
            if event == DISCONNECT:
                return self.disconnect_room(room)
        return super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )

    def deliver_events(self, room: str, batch: list[dict]) -> None:
        encoded: dict[tuple, list] = {}
        for sid, eio_sid in list(self.get_participants(NAMESPACE, room)):
            state = registry.get(sid)
            if state is None:
                continue
            chosen = state.select(batch)
            if chosen:
                self.send_events(sid, eio_sid, chosen, encoded)

    def send_events(self, sid: str, eio_sid: str, events: list[dict], cache=None) -> None:
        if self.is_stuck(eio_sid):
            log.warning("socket %s is not reading (queue full); disconnecting it", sid)
            self.drop(eio_sid)
            return
        key = tuple(event["seq"] for event in events)
        packets = cache.get(key) if cache is not None else None
        if packets is None:
            packets = self.encode(EVENTS, events)
            if cache is not None:
                cache[key] = packets
        for eio_pkt in packets:
            self.server._send_eio_packet(eio_sid, eio_pkt)
        notices = [e for e in events if e["type"] == NOTICE]
        for notice in notices:
            for eio_pkt in self.encode(NOTICE, notice_payload(notice)):
                self.server._send_eio_packet(eio_sid, eio_pkt)

    def encode(self, event: str, data) -> list:
        pkt = self.server.packet_class(packet.EVENT, namespace=NAMESPACE, data=[event, data])
        encoded = pkt.encode()
        if not isinstance(encoded, list):
            encoded = [encoded]
        return [eio_packet.Packet(eio_packet.MESSAGE, p) for p in encoded]

    def is_stuck(self, eio_sid: str) -> bool:
        socket = self.server.eio.sockets.get(eio_sid)
        queue = getattr(socket, "queue", None)
        if queue is None:
            return False
        if queue.qsize() > self.max_queued_packets:
            return True
        waiting = getattr(queue, "queue", ())  # the deque behind gevent's and stdlib's queues
        return sum(len(p.data) for p in list(waiting) if p is not None) > self.max_queued_bytes

    def drop(self, eio_sid: str) -> None:
        """Close the connection at once and free what it would never have read."""
        socket = self.server.eio.sockets.get(eio_sid)
        if socket is None:
            return
        socket.close(wait=False, abort=True)  # also runs the namespace's disconnect handler
        with contextlib.suppress(self.server.eio.queue_empty):
            while True:
                socket.queue.get_nowait()
                socket.queue.task_done()
        socket.queue.put(None)  # the writer's signal to stop, once it wakes

    def disconnect_room(self, room: str) -> None:
        for sid, _ in list(self.get_participants(NAMESPACE, room)):
            self.server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)


def notice_payload(event: dict) -> dict:
    payload = event["payload"]
    return {
        "id": event["id"],
        "level": payload.get("level", "info"),
        "title": payload.get("title", ""),
        "body": payload.get("body", ""),
        "created_at": event["timestamp"],
    }


class LocalStreamManager(StreamDelivery):
    """One process (embedded mode, tests): no message queue."""


class QueueStreamManager(KombuManager, StreamDelivery):
    """Several instances: Socket.IO's channel on RabbitMQ, then filtered delivery here."""
