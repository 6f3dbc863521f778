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
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import current_app

from ..events import store
from ..extensions import db
from .state import SocketState

# How long a socket may take to read one page before it counts as not reading.
REPLAY_DRAIN_SECONDS = 10.0
# Packets that may still wait for the socket when the next page is read.
DRAINED_BELOW = 2
POLL_SECONDS = 0.02


class NotReading(RuntimeError):
    """The socket did not take a replay page in time."""


def replay(
    state: SocketState,
    positions: dict[str, int],
    send: Callable[[list[dict]], None],
    queued: Callable[[], int | None],
) -> tuple[int, bool]:
    """Send ``state``'s socket everything after ``positions``; return (events sent, gap).

    ``queued`` tells how many packets still wait for the socket (None: it is gone).
    Call between ``state.begin_replay`` and ``state.end_replay``.
    """
    topics = [topic for topic, position in positions.items() if position > 0]
    if not topics:
        return 0, False
    limit = current_app.config["STREAM_REPLAY_LIMIT"]
    cursor = min(positions[topic] for topic in topics)
    sent_count, gap, first = 0, False, True
    while True:
        page = store.events_since(db.session, cursor, topics, limit=limit)
        # The socket may take its time over this page: hold no pooled connection
        # meanwhile (a reconnect storm of replays once emptied the pool).
        db.session.remove()
        if first:
            gap, first = page.gap, False
        sent = state.advance_replay([event.as_dict() for event in page.events])
        if sent:
            send(sent)
            sent_count += len(sent)
        if page.events:
            cursor = page.events[-1].seq
        if len(page.events) < limit and not state.take_overflow():
            return sent_count, gap
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
