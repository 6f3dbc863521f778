"""Replay: a subscribing socket's backlog from the event log, page after page.

A socket that missed events (its tab slept, its connection dropped) subscribes
with positions: one ``since`` for every topic, or one per topic.  It gets all
the log still holds after them, in ``seq`` order, in pages of
``STREAM_REPLAY_LIMIT`` events, however large the backlog.  Before the next page
the server waits for the socket to take the last one, so a long backlog never
piles up in memory; a socket that does not read it within
``REPLAY_DRAIN_SECONDS`` is disconnected, and resumes from where it got to.

Live events for those topics that arrive meanwhile are held (``SocketState``)
and released after the last page, less what the pages sent.  ``gap`` is true
only when retention has pruned the log past a position: then what is gone is
gone, and the client is told.

In a reconnect storm every socket stopped at the same event and asks for the
same pages: each page is read from the log, and encoded, once for all of them
(``SharedReads``).  A full page (``STREAM_REPLAY_LIMIT`` events) never changes,
so any recent read of it will do.  The last page, the tail, may have grown since
it was read: a socket ends its replay only on a tail read that began after the
socket joined its topics' rooms (every event stored before then is in it, and
every one stored later reaches the socket live, held then released); on an
older tail it sends what that holds, then reads on from a fresh one.  Sharing
never opens a hole.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy.orm import Session

from .. import metrics
from ..events import store
from ..extensions import db
from .state import SocketState

# How long a socket may take to read one page before it counts as not reading.
REPLAY_DRAIN_SECONDS = 10.0
# Packets that may still wait for the socket when the next page is read.
DRAINED_BELOW = 2
POLL_SECONDS = 0.02


# Reads kept for sockets that ask for the same page; and for how long a read may be shared.
SHARED_READS = 32
SHARED_READ_SECONDS = 5.0


class NotReading(RuntimeError):
    """The socket did not take a replay page in time."""


@dataclass
class SharedRead:
    """One page read from the log, for every socket that may take it."""

    began: float
    done: threading.Event = field(default_factory=threading.Event)
    events: list[dict] = field(default_factory=list)
    full: bool = False  # as many events as asked for: more may follow
    last_seq: int | None = None
    gap: bool = False
    failed: bool = False
    packets: list | None = None  # the whole page encoded, once (see namespace.send_replay)


class SharedReads:
    def __init__(self, keep: int = SHARED_READS, seconds: float = SHARED_READ_SECONDS):
        self.keep, self.seconds = keep, seconds
        self.reads: OrderedDict[tuple, SharedRead] = OrderedDict()
        self.lock = threading.Lock()

    def page(
        self, cursor: int, topics: list[str], limit: int, not_before: float | None = None
    ) -> SharedRead:
        """The page after ``cursor``: a recent read of it, else a new one. With
        ``not_before`` (``time.monotonic``), only a read that began then or later."""
        key = (cursor, tuple(sorted(topics)), limit)
        with self.lock:
            read = self.reads.get(key)
            now = time.monotonic()
            mine = (
                read is None
                or read.failed
                or now - read.began > self.seconds
                or (not_before is not None and read.began < not_before)
            )
            if mine:
                read = self.reads[key] = SharedRead(began=now)
                self.reads.move_to_end(key)
                while len(self.reads) > self.keep:
                    self.reads.popitem(last=False)
        if mine:
            metrics.replay_page("log")
            return self._read(read, cursor, topics, limit)
        if read.done.wait(REPLAY_DRAIN_SECONDS) and not read.failed:
            metrics.replay_page("shared")
            return read
        metrics.replay_page("log")
        return self._read(SharedRead(began=time.monotonic()), cursor, topics, limit)

    @staticmethod
    def _read(read: SharedRead, cursor: int, topics: list[str], limit: int) -> SharedRead:
        try:
            # A session of its own, so a transaction that begins with this read: MySQL
            # keeps a transaction's first snapshot (REPEATABLE READ), and the subscribe
            # asked for the latest seq before it joined its rooms; a page read in that
            # transaction would miss what was stored between the question and the join,
            # which the socket got neither live nor from the log.
            with Session(db.engine) as session:
                page = store.events_since(session, cursor, topics, limit=limit)
                read.events = [event.as_dict() for event in page.events]
            read.full = len(page.events) >= limit
            read.last_seq = page.events[-1].seq if page.events else None
            read.gap = page.gap
        except Exception:
            read.failed = True
            raise
        finally:
            # The socket may take its time over this page: hold no pooled connection
            # meanwhile (a reconnect storm of replays once emptied the pool).
            db.session.remove()
            read.done.set()
        return read


shared_reads = SharedReads()


def replay(
    state: SocketState,
    positions: dict[str, int],
    send: Callable[[list[dict], SharedRead], None],
    queued: Callable[[], int | None],
    joined: float,
) -> tuple[int, bool]:
    """Send ``state``'s socket everything after ``positions``; return (events sent, gap).

    ``send(events, read)`` sends events of ``read`` (all of them, or those the socket
    wants); ``queued`` tells how many packets still wait for the socket (None: it is
    gone); ``joined`` is when the socket joined its topics' rooms (``time.monotonic``).
    Call between ``state.begin_replay`` and ``state.end_replay``.
    """
    topics = [topic for topic, position in positions.items() if position > 0]
    if not topics:
        return 0, False
    limit = current_app.config["STREAM_REPLAY_LIMIT"]
    cursor = min(positions[topic] for topic in topics)
    sent_count, gap, first = 0, False, True
    fresh_since, not_before = joined, None
    while True:
        read = shared_reads.page(cursor, topics, limit, not_before)
        if first:
            gap, first = read.gap, False
        sent = state.advance_replay(read.events)
        if sent:
            send(sent, read)
            sent_count += len(sent)
        if read.last_seq is not None:
            cursor = read.last_seq
        if state.take_overflow():
            # Held live events were let go: they are in the log, in any read from now on.
            fresh_since = time.monotonic()
        elif not read.full and read.began >= fresh_since:
            return sent_count, gap
        # Read on: after a full page any recent read will do; after a tail, a fresh one.
        not_before = None if read.full else fresh_since
        wait_until_taken(queued)


def wait_until_taken(queued: Callable[[], int | None]) -> None:
    deadline = time.monotonic() + REPLAY_DRAIN_SECONDS
    while True:
        waiting = queued()
        if waiting is None:
            raise NotReading("the socket is gone")
        if waiting < DRAINED_BELOW:
            return
        if time.monotonic() > deadline:
            raise NotReading(f"{waiting} packets unread after {REPLAY_DRAIN_SECONDS:g}s")
        current_app.extensions["socketio"].sleep(POLL_SECONDS)
