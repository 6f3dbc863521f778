"""Filling this instance's holes from the log: events the fan-out never brought.

The consumer stores each event, then emits it into Socket.IO's message queue,
a fan-out with one queue per web instance.  While an instance's queue is gone
(after a broker restart the consumer may reconnect first and emit its backlog
before the instance has its queue back), what is emitted never reaches it, and
its sockets, still connected, would never know.

So each instance remembers, per topic, the highest ``seq`` the fan-out brought
it.  Each time Socket.IO's listener (re)connects to RabbitMQ, before its queue
exists, the instance holds the live batches that arrive, waits for the queue,
reads from the log everything after those positions on the topics its sockets
hold, delivers it, and only then releases what it held: the sockets get the
lost events in ``seq`` order, before any later one.  Each socket skips what it
already had, so an event that came both ways is shown once.

As a net under that, every ``STREAM_REPAIR_SECONDS`` the instance compares
its positions with the log for those topics; events stored more than
``REPAIR_GRACE`` ago that it never got are delivered from the log.  When
nothing is missing that is one indexed ``max(seq)`` per topic.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from ..database import utcnow
from ..events import store
from ..extensions import db
from .listeners import listeners
from .names import topic_room
from .periodic import PeriodicCheck
from .state import registry

log = logging.getLogger(__name__)

# An event younger than this may still be on its way through the fan-out.
REPAIR_GRACE = timedelta(seconds=2)
# Events read from the log per topic per check; the next check reads on.
REPAIR_PAGE = 1000
# After the listener (re)connects: time for its queue to be declared before the
# log is read (a later emit reaches the queue; an earlier one is in the log).
RESYNC_AFTER_SECONDS = 0.5
# How far back the resync after the listener's first connection reads: longer than
# the time between a reader subscribing and the listener's queue existing.
FIRST_CONNECT_LOOKBACK = timedelta(seconds=5)
# Pages of REPAIR_PAGE read per topic in one resync; a longer outage than that
# is left to the clients' own replay when they reconnect.
RESYNC_MAX_PAGES = 20


class HoleRepair:
    def __init__(self):
        self.seen: dict[str, int] = {}  # topic -> highest seq the fan-out brought
        self.app = self.socketio = None
        # While a resync is due: the batches held back, and where each topic resumes.
        self.holding = False
        self.held: list[tuple[str, list[dict]]] = []
        self.floors: dict[str, int] = {}
        self.floor_default = 0
        self._resyncing = False
        self._lock = threading.Lock()

    def attach(self, app, socketio) -> None:
        """Work for this app from now on (one per process; tests make several)."""
        self.app, self.socketio = app, socketio
        self.seen.clear()

    def listener_connecting(self) -> None:
        """Socket.IO's listener is (re)connecting: hold live batches, resync soon."""
        if self.app is None:
            return
        with self._lock:
            if not self.holding:
                self.floors = dict(self.seen)
                self.floor_default = max(self.seen.values(), default=0)
                self.holding = True
        if not self.floor_default:
            # The first connection: nothing came through yet.  Its readers subscribed
            # moments ago, maybe after events this listener will never see, so the
            # resync starts a little before now (readers skip what they had).
            with self.app.app_context():
                since = utcnow() - FIRST_CONNECT_LOOKBACK
                self.floor_default = store.last_seq_stored_before(db.session, since)
                db.session.remove()
        self.socketio.start_background_task(self._resync_soon)

    def hold(self, room: str, batch: list[dict]) -> bool:
        """Keep ``batch`` back while a resync is due; False when it may go now."""
        with self._lock:
            if self.holding:
                self.held.append((room, batch))
                return True
        return False

    def _resync_soon(self) -> None:
        self.socketio.sleep(RESYNC_AFTER_SECONDS)
        manager = self.socketio.server.manager
        with self._lock:
            if not self.holding or self._resyncing:
                return
            self._resyncing = True
        try:
            with self.app.app_context():
                self.resync(manager)
        except Exception:
            log.exception("resync after the listener reconnected failed")
        finally:
            with self._lock:
                held, self.held = self.held, []
                self.holding = self._resyncing = False
            for room, batch in held:
                manager.deliver_events(room, batch)

    def resync(self, manager) -> int:
        """Deliver from the log what came after each held topic's position."""
        sent = 0
        for topic in sorted(self.held_topics()):
            position = self.floors.get(topic, self.floor_default)
            for _ in range(RESYNC_MAX_PAGES):
                page = store.events_since(db.session, position, [topic], limit=REPAIR_PAGE)
                if not page.events:
                    break
                manager.enqueue_events(topic_room(topic), [e.as_dict() for e in page.events])
                sent += len(page.events)
                position = page.events[-1].seq
                if len(page.events) < REPAIR_PAGE:
                    break
        db.session.remove()
        if sent:
            log.warning("listener reconnected: %d events resent from the log", sent)
        return sent

    def missing_before(self, topic: str, batch: list[dict]) -> list[dict]:
        """The events of ``topic`` this instance never got before ``batch``, from the log.

        Each event says which one came before it on its topic (``prev``): a batch
        whose first event follows one this instance never saw shows the hole at
        once, and it is filled before the batch goes out."""
        seen, prev = self.seen.get(topic), batch[0].get("prev")
        if not seen or prev is None or prev <= seen or self.app is None:
            return []
        with self.app.app_context():
            page = store.events_since(db.session, seen, [topic], limit=REPAIR_PAGE)
            db.session.remove()
        missing = [event.as_dict() for event in page.events if event.seq < batch[0]["seq"]]
        if missing:
            log.warning(
                "topic %s: seq %d-%d never came through the fan-out; delivered from the log",
                topic,
                missing[0]["seq"],
                missing[-1]["seq"],
            )
        return missing

    def saw(self, topic: str, seq: int) -> None:
        if seq > self.seen.get(topic, 0):
            self.seen[topic] = seq

    def held_topics(self) -> set[str]:
        """The topics this process's sockets and event streams read."""
        held = {topic for state in list(registry.sockets.values()) for topic in state.filters}
        return held | listeners.topics()

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


repair = HoleRepair()
# The net under the resyncs: what the fan-out lost and nothing else noticed.
checker = PeriodicCheck(
    "hole repair", "STREAM_REPAIR_SECONDS", lambda socketio: repair.check(socketio.server.manager)
)
