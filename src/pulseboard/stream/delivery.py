"""Delivering batches to sockets, each filtered to what that socket asked for.

The consumer emits one ``events`` message per topic to the room
``topic:<topic>``.  A plain Socket.IO room emit would hand every member the
whole batch; this manager intercepts it and sends each socket only the events
its type and key filters accept, never one it already had, encoding each
distinct result once.  It also turns the ``pb:disconnect`` control message into
local disconnects on every instance, and drops sockets whose outgoing queue
has grown past ``MAX_QUEUED_PACKETS`` (a client that stopped reading) instead
of buffering for them without bound.

Delivery adapts to load.  A batch for a room that is idle goes out at once; a
batch that arrives while the room's previous round is still being handed to
its sockets, or in the pause after it (as long as the round took), waits and
joins whatever else arrives meanwhile, and all of it goes out as one message
per socket.  A quiet stream is thus forwarded with no added delay, and a busy
one costs one write per socket per round, however many events the round
carries, with rounds that grow with the load.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from operator import itemgetter

import socketio
from engineio import packet as eio_packet
from socketio import packet

from ..events.emitter import EVENTS, NAMESPACE
from ..events.socketio_queue import KombuManager
from .repair import repair
from .state import registry
from .wire import SharedPacket

log = logging.getLogger(__name__)

DISCONNECT = "pb:disconnect"
NOTICE = "notice"
# What may wait for one client before it counts as stuck.  Engine.IO queues
# without limit, so a client that stopped reading would otherwise hold every
# event sent to it.  By count: at busy-stream batch sizes, many seconds of
# events; by size: a few large batches.
MAX_QUEUED_PACKETS = 256
MAX_QUEUED_BYTES = 4 * 1024 * 1024
# After each round of a room, a pause of this many times the round's own duration
# (capped): an idle room's batch still goes out at once, a busy room's rounds grow.
ROUND_REST = 1.0
MAX_REST = 0.05


class StreamDelivery(socketio.Manager):
    max_queued_packets = MAX_QUEUED_PACKETS
    max_queued_bytes = MAX_QUEUED_BYTES

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # room -> events waiting for the round in progress to finish
        self._waiting: dict[str, list[dict]] = {}
        self._waiting_lock = threading.Lock()

    def emit(
        self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs
    ):
        room = to or room
        if isinstance(room, str) and callback is None:
            if namespace == NAMESPACE and event == EVENTS and room.startswith("topic:"):
                return self.deliver_events(room, data)
            if event == DISCONNECT:
                return self.disconnect_room(room, namespace)
        return super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )

    def deliver_events(self, room: str, batch: list[dict]) -> None:
        """Send ``batch`` now if the room is idle, else with the room's next round."""
        if batch:
            repair.saw(room.removeprefix("topic:"), max(event["seq"] for event in batch))
        with self._waiting_lock:
            waiting = self._waiting.get(room)
            if waiting is not None:
                waiting.extend(batch)
                return
            self._waiting[room] = list(batch)
        self.server.start_background_task(self._deliver_rounds, room)

    def _deliver_rounds(self, room: str) -> None:
        try:
            while True:
                with self._waiting_lock:
                    events = self._waiting[room]
                    if not events:
                        del self._waiting[room]
                        return
                    self._waiting[room] = []
                events = in_order(events)
                started = time.monotonic()
                self.deliver_round(room, events)
                # Let the writers run and the next batches arrive; they make the next round.
                self.server.sleep(0)
                # Then rest as long as the round took: delivery spends at most about half
                # the process's time, and the busier the room, the more each round carries.
                self.server.sleep(min(ROUND_REST * (time.monotonic() - started), MAX_REST))
        except Exception:
            with self._waiting_lock:
                self._waiting.pop(room, None)
            log.exception("delivery to %s failed", room)

    def deliver_round(self, room: str, events: list[dict]) -> None:
        encoded: dict[tuple, list] = {}  # each distinct selection is encoded once
        topic = room.removeprefix("topic:")
        for sid, eio_sid in list(self.get_participants(NAMESPACE, room)):
            state = registry.get(sid)
            if state is None:
                continue
            chosen = state.select(topic, events)
            if not chosen:
                continue
            # Most sockets take the round whole: the same list, no need to key it by seq.
            key = () if chosen is events else tuple(event["seq"] for event in chosen)
            try:
                ready = encoded.get(key)
                if ready is None:
                    ready = encoded[key] = self.encode_events(chosen)
                chosen, packets = ready
                if packets:
                    self.send_packets(sid, eio_sid, chosen, packets)
            except Exception:
                # One socket's failure is its own: the rest of the room still gets the round.
                log.exception("delivery of %s to socket %s failed", room, sid)

    def send_packets(self, sid: str, eio_sid: str, events: list[dict], packets: list) -> None:
        socket = self.server.eio.sockets.get(eio_sid)
        if socket is None or socket.closed:
            return
        if self.is_stuck(socket):
            log.warning("socket %s is not reading (queue full); disconnecting it", sid)
            self.drop(eio_sid)
            return
        websocket = getattr(socket, "lean_websocket", None)
        if websocket is not None and not socket.upgrading:
            packets = websocket.send_now(socket.queue, packets)
        for eio_pkt in packets:
            socket.send(eio_pkt)
        notices = [e for e in events if e["type"] == NOTICE]
        for notice in notices:
            for eio_pkt in self.encode(NOTICE, notice_payload(notice)):
                socket.send(eio_pkt)

    def encode_events(self, events: list[dict]) -> tuple[list[dict], list]:
        """The events that can be sent, and their packets: an event the encoder
        cannot take (found only when the whole list fails) is left out."""
        try:
            return events, self.encode(EVENTS, events)
        except Exception:  # RecursionError, a lone surrogate...
            events = deliverable(events)
            return events, (self.encode(EVENTS, events) if events else [])

    def encode(self, event: str, data) -> list:
        pkt = self.server.packet_class(packet.EVENT, namespace=NAMESPACE, data=[event, data])
        encoded = pkt.encode()
        if not isinstance(encoded, list):
            encoded = [encoded]
        return [
            SharedPacket(p) if isinstance(p, str) else eio_packet.Packet(eio_packet.MESSAGE, p)
            for p in encoded
        ]

    def queued_packets(self, eio_sid: str) -> int | None:
        """Packets waiting for a connection to take them; None once it is closed."""
        socket = self.server.eio.sockets.get(eio_sid)
        if socket is None or socket.closed:
            return None
        return socket.queue.qsize()

    def is_stuck(self, socket) -> bool:
        queue = getattr(socket, "queue", None)
        if queue is None:
            return False
        if queue.qsize() > self.max_queued_packets:
            return True
        waiting = getattr(queue, "queue", ())  # the deque behind gevent's and stdlib's queues
        queued = sum(
            len(p.data) for p in list(waiting) if p is not None and isinstance(p.data, str | bytes)
        )
        return queued > self.max_queued_bytes

    def drop(self, eio_sid: str) -> None:
        """Close the connection at once and free what it would never have read."""
        socket = self.server.eio.sockets.get(eio_sid)
        if socket is None:
            return
        socket.close(wait=False, abort=True)  # also runs the namespace's disconnect handler
        while not socket.queue.empty():
            socket.queue.get_nowait()
            socket.queue.task_done()
        socket.queue.put(None)  # the writer's signal to stop, once it wakes

    def disconnect_room(self, room: str, namespace: str) -> None:
        for sid, _ in list(self.get_participants(namespace, room)):
            self.server.disconnect(sid, namespace=namespace, ignore_queue=True)


def deliverable(events: list[dict]) -> list[dict]:
    """``events`` less any that cannot be encoded (logged by ``seq``), so that one bad
    event never takes the others of its round or replay with it."""
    kept = []
    for event in events:
        try:
            json.dumps(event)
        except Exception:  # RecursionError, a lone surrogate...
            log.error("event seq %s cannot be encoded; it is not delivered", event.get("seq"))
        else:
            kept.append(event)
    return kept


def in_order(events: list[dict]) -> list[dict]:
    """A round's events by ``seq``, each once (a redelivered batch may repeat some)."""
    events.sort(key=itemgetter("seq"))  # in order already, unless two consumers run
    unique = [events[0]]
    for event in events[1:]:
        if event["seq"] != unique[-1]["seq"]:
            unique.append(event)
    return unique


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
