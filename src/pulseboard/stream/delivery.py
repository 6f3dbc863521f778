"""The stream's Socket.IO manager: where batches from the consumer arrive.

The consumer emits one ``events`` message per topic to the room
``topic:<topic>``.  A plain Socket.IO room emit would hand every member the
whole batch; this manager intercepts it and delivers it in rounds
(``rounds``), each socket getting only the events its filters accept, written
by ``socket_write`` within the limits of ``backpressure``.  It also turns the
``pb:disconnect`` control message into local disconnects on every instance.
"""

from __future__ import annotations

from ..events.socketio_queue import KombuManager
from .backpressure import QueueLimits, queued_packets
from .names import DISCONNECT, EVENTS, NAMESPACE, is_topic_room
from .repair import repair
from .rounds import RoundDelivery
from .socket_write import send_packets


class StreamDelivery(RoundDelivery):
    limits = QueueLimits()  # set from the configuration by init_socketio

    def emit(
        self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs
    ):
        room = to or room
        if isinstance(room, str) and callback is None:
            if namespace == NAMESPACE and event == EVENTS and is_topic_room(room):
                return self.deliver_events(room, data)
            if event == DISCONNECT:
                return self.disconnect_room(room, namespace)
        return super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )

    def send_packets(self, sid: str, eio_sid: str, packets: list) -> None:
        send_packets(self.server, sid, eio_sid, packets, self.limits)

    def queued_packets(self, eio_sid: str) -> int | None:
        """Packets waiting for a connection to take them; None once it is closed."""
        return queued_packets(self.server, eio_sid)

    def disconnect_room(self, room: str, namespace: str) -> None:
        for sid, _ in list(self.get_participants(namespace, room)):
            self.server.disconnect(sid, namespace=namespace, ignore_queue=True)


class LocalStreamManager(StreamDelivery):
    """One process (embedded mode, tests): no message queue."""


class QueueStreamManager(KombuManager, StreamDelivery):
    """Several instances: Socket.IO's channel on RabbitMQ, then filtered delivery here."""

    def listener_queue(self):
        # Each (re)connect of the listener: what is emitted before its queue exists
        # never comes, so the instance resyncs from the log (repair).
        repair.listener_connecting()
        return super().listener_queue()
