"""Filling this instance's holes from the log: events the fan-out never brought.

The consumer stores each event, then emits it into Socket.IO's message queue,
a fan-out with one queue per web instance.  While an instance's queue is gone
(after a broker restart the consumer may reconnect first and emit its backlog
before the instance has its queue back), what is emitted never reaches it, and
its sockets, still connected, would never know.

So each instance remembers, per topic, the highest ``seq`` the fan-out brought
it, and every ``STREAM_REPAIR_SECONDS`` compares that with the log for the
topics its sockets hold.  Events stored more than ``REPAIR_GRACE`` ago that it
never got are read from the log and delivered like any round; each socket
skips what it already had, so a late fan-out copy is never shown twice.  When
nothing is missing the check is one indexed ``max(seq)`` per topic.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from ..database import utcnow
from ..events import store
from ..extensions import db
from .names import topic_room
from .state import registry

log = logging.getLogger(__name__)

# An event younger than this may still be on its way through the fan-out.
REPAIR_GRACE = timedelta(seconds=2)
# Events read from the log per topic per check; the next check reads on.
REPAIR_PAGE = 1000


class HoleRepair:
    def __init__(self):
        self.seen: dict[str, int] = {}  # topic -> highest seq the fan-out brought
        self.started = False

    def saw(self, topic: str, seq: int) -> None:
        if seq > self.seen.get(topic, 0):
            self.seen[topic] = seq

    def held_topics(self) -> set[str]:
        return {topic for state in list(registry.sockets.values()) for topic in state.filters}

    def check(self, manager) -> int:
        """Deliver what the fan-out lost for the topics held here; return how many."""
        repaired = 0
        for topic in sorted(self.held_topics()):
            latest = store.latest_seq_on(db.session, topic)
            seen = self.seen.get(topic)
            if seen is None:
                # Watched from now on: what came before is a replay's business.
                self.seen[topic] = latest
                continue
            if latest <= seen:
                continue
            missed = store.events_stored_before(
                db.session, topic, after=seen, before=utcnow() - REPAIR_GRACE, limit=REPAIR_PAGE
            )
            if missed:
                log.warning(
                    "topic %s: %d events (seq %d-%d) never came through the fan-out; "
                    "delivering them from the log",
                    topic,
                    len(missed),
                    missed[0].seq,
                    missed[-1].seq,
                )
                manager.deliver_events(topic_room(topic), [event.as_dict() for event in missed])
                repaired += len(missed)
        db.session.remove()
        return repaired

    def ensure_running(self, socketio, app) -> None:
        if self.started:
            return
        self.started = True
        socketio.start_background_task(self._check_forever, socketio, app)

    def _check_forever(self, socketio, app) -> None:
        interval = app.config["STREAM_REPAIR_SECONDS"]
        while True:
            socketio.sleep(interval)
            try:
                with app.app_context():
                    self.check(socketio.server.manager)
            except Exception:  # the check must never end for good
                log.exception("hole repair failed; trying again in %s s", interval)


repair = HoleRepair()
