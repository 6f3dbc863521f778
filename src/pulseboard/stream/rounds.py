"""Rounds: how a room's batches become one message per socket, however busy the room.

A batch for a room that is idle goes out at once.  A batch that arrives while
the room's previous round is still being handed to its sockets, or in the
pause after it (as long as the round took), waits and joins whatever else
arrives meanwhile, and all of it goes out as one round.  A quiet stream is thus
forwarded with no added delay, and a busy one costs one write per socket per
round, however many events the round carries, with rounds that grow with the
load.  In a round each socket gets only the events its filters accept and it
has not had, and each distinct selection is encoded once.
"""

from __future__ import annotations

import logging
import threading
import time
from operator import itemgetter

import socketio

from .. import metrics
from .listeners import listeners
from .names import NAMESPACE, room_topic
from .repair import repair
from .socket_write import encode_events
from .state import registry
from .toasts import toast_packets

log = logging.getLogger(__name__)

# After each round of a room, a pause of this many times the round's own duration
# (capped): an idle room's batch still goes out at once, a busy room's rounds grow.
ROUND_REST = 1.0
MAX_REST = 0.05


class RoundDelivery(socketio.Manager):
    """A Socket.IO manager that delivers each topic room's events in rounds."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # room -> events waiting for the round in progress to finish
        self._waiting: dict[str, list[dict]] = {}
        self._waiting_lock = threading.Lock()

    def deliver_events(self, room: str, batch: list[dict]) -> None:
        """Send ``batch`` now if the room is idle, else with the room's next round
        (or after the resync that follows a listener reconnect: ``repair``)."""
        if not batch or repair.hold(room, batch):
            return
        self.enqueue_events(room, batch)

    def enqueue_events(self, room: str, batch: list[dict]) -> None:
        topic = room_topic(room)
        missing = repair.missing_before(topic, batch)
        if missing:
            batch = missing + batch
        repair.saw(topic, max(event["seq"] for event in batch))
        listeners.offer(topic, batch)  # Server-Sent Events streams: queued, never awaited
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
        prepared: dict[tuple, list] = {}  # each distinct selection is encoded once
        topic = room_topic(room)
        sent = False
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
                packets = prepared.get(key)
                if packets is None:
                    packets = prepared[key] = self.prepare(chosen)
                if packets:
                    self.send_packets(sid, eio_sid, packets)
                    sent = True
            except Exception:
                # One socket's failure is its own: the rest of the room still gets the round.
                log.exception("delivery of %s to socket %s failed", room, sid)
        if sent:
            try:
                metrics.round_delivered(events)
            except Exception:  # a figure is never worth the events waiting for the next round
                log.exception("timing a round of %s failed", room)

    def prepare(self, events: list[dict]) -> list:
        """The packets of a selection: its ``events`` message, then a toast per notice."""
        kept, packets = encode_events(self.server, events)
        return packets + toast_packets(self.server, kept) if packets else []

    def send_packets(self, sid: str, eio_sid: str, packets: list) -> None:
        raise NotImplementedError  # the manager's own (delivery.StreamDelivery)


def in_order(events: list[dict]) -> list[dict]:
    """A round's events by ``seq``, each once (a redelivered batch may repeat some)."""
    events.sort(key=itemgetter("seq"))  # in order already, unless two consumers run
    unique = [events[0]]
    for event in events[1:]:
        if event["seq"] != unique[-1]["seq"]:
            unique.append(event)
    return unique
