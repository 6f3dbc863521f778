"""The event log: storing batches exactly once, reading them back by ``seq``, pruning.

Only the consumer writes here, one batch per transaction, so ``seq`` (the
auto-increment key) follows the order events were taken off the queue.  A
redelivered event keeps the ``seq`` it got the first time.  An event is known by
its topic and id together: the id is the producer's idempotency key within its
topic, so producers scoped to different topics can never shadow each other.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, delete, func, select, union_all
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import Session

from ..database import utcnow
from ..models import Event
from .envelope import Envelope, compact_json

events_table = Event.__table__
log = logging.getLogger(__name__)
PREV_LOOKS_PER_STATEMENT = 200


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as browsers receive it: the envelope plus its place in the log, and
    ``prev``, the seq of the event before it on its topic (0: none), by which a
    client tells that it has every event of the topic since the last it saw."""

    seq: int
    envelope: Envelope
    prev: int | None = None

    @property
    def topic(self) -> str:
        return self.envelope.topic

    @property
    def id(self) -> str:
        return self.envelope.id

    def as_dict(self) -> dict[str, Any]:
        data = {"seq": self.seq, **self.envelope.as_dict()}
        if self.prev is not None:
            data["prev"] = self.prev
        return data

    @classmethod
    def from_row(cls, row: Event) -> StoredEvent:
        envelope = Envelope(
            id=row.event_id,
            topic=row.topic,
            type=row.type,
            timestamp=row.timestamp,
            payload=json.loads(row.payload),
            key=row.key,
        )
        return cls(seq=row.seq, envelope=envelope)


@dataclass(frozen=True)
class Page:
    events: list[StoredEvent]
    # True when events after the asked-for seq were already pruned from the log.
    gap: bool


def store_batch(session: Session, envelopes: Sequence[Envelope]) -> list[StoredEvent]:
    """Insert new envelopes, skip ones already stored; return all of them by ``seq``."""
    first_seen: dict[tuple[str, str], Envelope] = {}
    for envelope in envelopes:
        first_seen.setdefault((envelope.topic, envelope.id), envelope)
    unique = list(first_seen.values())
    if not unique:
        return []
    now = utcnow()
    rows = [
        {
            "event_id": e.id,
            "topic": e.topic,
            "type": e.type,
            "key": e.key,
            "timestamp": e.timestamp,
            "payload": compact_json(e.payload),
            "stored_at": now,
        }
        for e in unique
    ]
    session.execute(_insert_skipping_duplicates(session), rows)
    # Both lists lead into the (topic, event_id) key; rows of other pairs are ignored.
    found = session.execute(
        select(Event.topic, Event.event_id, Event.seq).where(
            Event.topic.in_(sorted({e.topic for e in unique})),
            Event.event_id.in_(sorted({e.id for e in unique})),
        )
    ).all()
    seqs = {(topic, event_id): seq for topic, event_id, seq in found}
    stored = [StoredEvent(seq=seqs[key], envelope=envelope) for key, envelope in first_seen.items()]
    stored.sort(key=lambda event: event.seq)
    return with_prev(session, stored)


def with_prev(session: Session, events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """``events`` (in seq order) each with ``prev``: the one before it in the list on
    its topic, or for a topic's first, the log's: one statement for all the topics,
    an indexed look at (topic, seq) each."""
    first_on: dict[str, int] = {}
    for event in events:
        first_on.setdefault(event.topic, event.seq)
    last = _seqs_before(session, first_on)
    linked = []
    for event in events:
        linked.append(StoredEvent(event.seq, event.envelope, prev=last[event.topic]))
        last[event.topic] = event.seq
    return linked


def _seqs_before(session: Session, first_on: dict[str, int]) -> dict[str, int]:
    """For each topic, the newest seq in the log before the given one (0: none)."""
    found = dict.fromkeys(first_on, 0)
    pairs = list(first_on.items())
    # A batch of many topics would otherwise cost one round trip per topic; a few
    # hundred looks make one statement well within every server's limits.
    for start in range(0, len(pairs), PREV_LOOKS_PER_STATEMENT):
        chunk = pairs[start : start + PREV_LOOKS_PER_STATEMENT]
        values = {}
        for n, (topic, seq) in enumerate(chunk):
            values[f"t{n}"], values[f"s{n}"] = topic, seq
        for topic, seq in session.execute(_looks_before(len(chunk)), values):
            found[topic] = seq or 0
    return found


@functools.lru_cache(maxsize=PREV_LOOKS_PER_STATEMENT)
def _looks_before(count: int):
    """``count`` indexed looks in one statement, made once per count: building and
    keying a statement of many selects costs more than running it."""
    looks = [
        select(bindparam(f"t{n}", type_=String).label("topic"), func.max(Event.seq)).where(
            Event.topic == bindparam(f"t{n}"), Event.seq < bindparam(f"s{n}")
        )
        for n in range(count)
    ]
    return looks[0] if count == 1 else union_all(*looks)


def _insert_skipping_duplicates(session: Session):
    """INSERT that leaves an existing (topic, event_id) alone (the unique key dedupes)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(events_table).on_conflict_do_nothing(
            index_elements=["topic", "event_id"]
        )
    statement = mysql.insert(events_table)
    return statement.on_duplicate_key_update(event_id=statement.inserted.event_id)


def events_since(
    session: Session,
    seq: int,
    topics: Iterable[str],
    limit: int = 1000,
) -> Page:
    """Up to ``limit`` events after ``seq`` on ``topics``, oldest first."""
    topics = list(topics)
    if not topics:
        return Page([], gap=False)
    # Plain rows, not ORM objects: a replay reads many and only formats them.
    page = (
        select(events_table)
        .where(events_table.c.seq > seq, events_table.c.topic.in_(topics))
        .order_by(events_table.c.seq)
        .limit(limit)
    )
    if len(topics) == 1:
        # Left to choose, MariaDB reads the topic's entries from its first event on
        # (ref on topic alone): as far as ``seq`` into the topic before the first row.
        # For several topics it walks the primary key from ``seq``, which is bounded.
        page = on_index(page, "ix_events_topic_seq")
    rows = session.execute(page).all()
    oldest = session.scalar(select(func.min(Event.seq)))
    # The log reaches back to `oldest`; anything between `seq` and it is gone.
    gap = oldest is not None and seq + 1 < oldest and seq > 0
    return Page(with_prev(session, readable(rows)), gap=gap)


def latest_seq(session: Session) -> int:
    return session.scalar(select(func.max(Event.seq))) or 0


def last_seq_stored_before(session: Session, moment: datetime) -> int:
    """The newest seq stored before ``moment`` (seqs grow with storing time): the first
    stored at or after it, less one, found on the stored_at index; else the newest."""
    first_after = session.scalar(
        select(Event.seq).where(Event.stored_at >= moment).order_by(Event.stored_at).limit(1)
    )
    return first_after - 1 if first_after is not None else latest_seq(session)


def latest_seq_on(session: Session, topic: str) -> int:
    """The newest seq on ``topic`` (0 for none): one look at the (topic, seq) index."""
    return session.scalar(select(func.max(Event.seq)).where(Event.topic == topic)) or 0


def events_stored_before(
    session: Session, topic: str, after: int, before: datetime, limit: int
) -> list[StoredEvent]:
    """Up to ``limit`` events on ``topic`` after seq ``after``, oldest first, up to the
    first one stored at or after ``before`` (one still on its way to the browsers)."""
    rows = session.scalars(
        on_index(
            select(Event)
            .where(Event.topic == topic, Event.seq > after)
            .order_by(Event.seq)
            .limit(limit),
            "ix_events_topic_seq",
        )
    ).all()
    settled = []
    for row in rows:
        if row.stored_at >= before:
            break
        settled.append(row)
    return with_prev(session, readable(settled))


# Deleting in slices keeps each transaction (and MySQL's undo log) small, and lets
# the consumer go back to its queue between them (see ``prune_slices``).
PRUNE_SLICE = 10_000


def prune(session: Session, max_age: timedelta | None, max_count: int | None) -> int:
    """Delete events stored longer ago than ``max_age`` and beyond the newest ``max_count``."""
    return sum(prune_slices(session, max_age, max_count))


def prune_slices(
    session: Session, max_age: timedelta | None, max_count: int | None
) -> Iterator[int]:
    """Prune as ``prune`` does, one committed slice of at most ``PRUNE_SLICE`` oldest
    events (a primary-key range) at a time, yielding how many each deleted.  A caller
    may stop between two slices and leave the rest for later."""
    cutoffs = []
    if max_age is not None:
        too_old = select(func.max(Event.seq)).where(Event.stored_at < utcnow() - max_age)
        cutoffs.append(session.scalar(too_old))
    if max_count is not None:
        beyond = select(Event.seq).order_by(Event.seq.desc()).offset(max_count).limit(1)
        cutoffs.append(session.scalar(beyond))
    cutoff = max((c for c in cutoffs if c is not None), default=None)
    oldest = session.scalar(select(func.min(Event.seq)))
    session.commit()
    while cutoff is not None and oldest is not None and oldest <= cutoff:
        upper = min(oldest + PRUNE_SLICE - 1, cutoff)
        deleted = session.execute(delete(Event).where(Event.seq <= upper)).rowcount or 0
        session.commit()
        oldest = upper + 1
        yield deleted


def on_index(statement, index: str):
    """``statement`` made to read ``index`` on MySQL: MariaDB's planner, left to choose
    among the indexes that lead with topic, has picked ones that read far more."""
    for dialect in ("mysql", "mariadb"):
        statement = statement.with_hint(events_table, f"FORCE INDEX ({index})", dialect)
    return statement


def readable(rows: Iterable[Event]) -> list[StoredEvent]:
    """The rows as events, less any whose payload can no longer be read (one stored
    before the entry limits, say): logged by ``seq``, never failing the others."""
    events = []
    for row in rows:
        try:
            events.append(StoredEvent.from_row(row))
        except (ValueError, RecursionError):
            log.error("event seq %s in the log cannot be read; it is skipped", row.seq)
    return events
