"""Handing stored events to Socket.IO: one ``events`` message per topic per batch.

Each topic is a room of the ``/stream`` namespace.  With RabbitMQ the consumer
writes into Socket.IO's message queue (every web instance relays to its own
sockets); in embedded mode it emits straight into the web process's server.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ..stream.names import EVENTS, NAMESPACE, topic_room
from .socketio_queue import KombuManager
from .store import StoredEvent


class Emitter:
    """Send batches of stored events to the rooms of their topics, in ``seq`` order."""

    def __init__(self, emit):
        self._emit = emit

    @classmethod
    def over_message_queue(cls, broker_url: str, channel: str) -> Emitter:
        manager = KombuManager(broker_url, channel=channel, write_only=True)
        return cls(manager.emit)

    @classmethod
    def in_process(cls, socketio) -> Emitter:
        return cls(socketio.emit)

    def emit(self, events: Sequence[StoredEvent]) -> None:
        by_topic: dict[str, list[dict]] = defaultdict(list)
        for event in events:
            by_topic[event.topic].append(event.as_dict())
        for topic, batch in by_topic.items():
            self._emit(EVENTS, batch, namespace=NAMESPACE, to=topic_room(topic))
