"""Reading the event log a page at a time, for ``GET /api/v1/events``.

A page is cut so that a client can go on from it with nothing lost or repeated:
each topic (or each topic and key, with a ``keys`` filter) is walked along its
own index from the cursor, at most a page and one more event each, and the page
holds only the events up to where every walk has looked, so no event can fall
between two pages.  Every page stops at ``newest``, the newest seq on its topics
when it was read: a client that has the pages up to ``newest`` subscribes live
from there (``since``), and gets each event exactly once.

Several indexes lead with topic, and MariaDB's planner, left to choose, has
sorted a whole topic on (topic, timestamp), or walked the primary key through
every other topic, to fill one page; so each read here names its index there.
SQLite's planner takes the same ones unasked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..stream.state import TopicFilter
from .store import StoredEvent, events_table, latest_seq_on, on_index, readable, with_prev

# With a filter on type or time, a walk reads at most this many index entries per
# request: a filter that matches little must not read a topic's whole history at
# once.  The page then holds what was found (perhaps nothing) and says there is more.
SCAN_BUDGET = 10_000
# Past this many topic and key pairs a keys filter is applied on the topic's walk
# instead of one walk per pair.
MAX_KEY_WALKS = 64
# Look-ups of ``prev`` sent in one statement: well under SQLite's limit on columns.
PREV_LOOKS_PER_STATEMENT = 100


@dataclass(frozen=True)
class HistoryQuery:
    topics: list[str]
    filter: TopicFilter
    after: int | None = None  # only seqs above it
    before: int | None = None  # only seqs below it
    since: datetime | None = None  # only events timestamped at or after it
    until: datetime | None = None  # only events timestamped before it
    limit: int = 100
    descending: bool = False


@dataclass(frozen=True)
class HistoryPage:
    events: list[StoredEvent]  # in the query's order
    newest: int  # the newest seq on the query's topics when the page was read (0: none)
    # Where the next page starts (its ``after``, or ``before`` when descending); None: no
    # more.  ``bounds`` are the time range's limits in seq, for the next page to keep.
    cursor: int | None
    bounds: dict[str, int]


def read_page(session: Session, query: HistoryQuery, budget: int = SCAN_BUDGET) -> HistoryPage:
    newest = max(latest_seq_on(session, topic) for topic in query.topics)
    low = query.after or 0
    high = newest if query.before is None else min(newest, query.before - 1)
    ranges, bounds = _topic_ranges(session, query, low, high)
    by_key = _by_key(query)
    conditions = _conditions(query, by_key)
    scans = [
        scan_seqs(
            session,
            topic,
            topic_low,
            topic_high,
            key=key,
            conditions=conditions,
            descending=query.descending,
            limit=query.limit,
            budget=budget,
        )
        for topic, (topic_low, topic_high) in ranges.items()
        for key in (sorted(query.filter.keys) if by_key else [None])
    ]
    # Every walk has seen all its matches up to where it got; the page can hold only
    # what lies before the shortest of them.
    if query.descending:
        reached = max((s.reached for s in scans if s.reached is not None), default=low + 1)
        found = sorted({seq for s in scans for seq in s.seqs if seq >= reached}, reverse=True)
        ended = reached <= low + 1
    else:
        reached = min((s.reached for s in scans if s.reached is not None), default=high)
        found = sorted({seq for s in scans for seq in s.seqs if seq <= reached})
        ended = reached >= high
    page = found[: query.limit]
    if len(found) > query.limit:
        cursor: int | None = page[-1]
    elif not ended:
        cursor = reached  # a walk used its budget: on from where it got
    else:
        cursor = None
    # With no filter in SQL each walk read every event of its topic in its range.
    whole = not conditions and not by_key
    events = [e for e in events_at(session, page, whole) if query.filter.accepts(e.as_dict())]
    if query.descending:
        events.reverse()
    return HistoryPage(events, newest, cursor, bounds if cursor is not None else {})


def _topic_ranges(session: Session, query: HistoryQuery, low: int, high: int):
    """Each topic's seq range to walk: the query's, narrowed to the time range's events.

    The time range is looked up only for a side the query does not bound by seq;
    the next page carries what was found (``bounds``), so it needs no look."""
    need_low = query.since is not None and query.after is None
    need_high = query.until is not None and query.before is None
    if not (need_low or need_high):
        return dict.fromkeys(query.topics, (low, high)), {}
    ranges = {}
    for topic in query.topics:
        window = seq_window(session, topic, query.since, query.until)
        if window is not None:
            ranges[topic] = (max(low, window[0] - 1), min(high, window[1]))
    bounds = {}
    if ranges and need_low and query.descending:
        bounds["after"] = min(topic_low for topic_low, _ in ranges.values())
    if ranges and need_high and not query.descending:
        bounds["before"] = max(topic_high for _, topic_high in ranges.values()) + 1
    return ranges, bounds


def _by_key(query: HistoryQuery) -> bool:
    keys = query.filter.keys
    return keys is not None and len(query.topics) * len(keys) <= MAX_KEY_WALKS


def _conditions(query: HistoryQuery, by_key: bool) -> list:
    """The filters a walk applies to the rows it reads.  The database compares type and
    key without case under MySQL's collation; the page is checked again with the
    stream's own filter, so it holds exactly what the stream would deliver."""
    column = events_table.c
    conditions = []
    if query.filter.types is not None:
        conditions.append(column.type.in_(sorted(query.filter.types)))
    if query.filter.keys is not None and not by_key:
        conditions.append(column.key.in_(sorted(query.filter.keys)))
    if query.since is not None:
        conditions.append(column.timestamp >= query.since)
    if query.until is not None:
        conditions.append(column.timestamp < query.until)
    return conditions


def seq_window(
    session: Session, topic: str, since: datetime | None, until: datetime | None
) -> tuple[int, int] | None:
    """The lowest and highest seq on ``topic`` of events timestamped in [since, until)
    (None: there are none).  It reads that time range's entries of the (topic,
    timestamp) index and no rows: a producer's timestamps need not follow seq, so no
    shorter look can tell where the range begins and ends in the log."""
    column = events_table.c
    conditions = [column.topic == topic]
    if since is not None:
        conditions.append(column.timestamp >= since)
    if until is not None:
        conditions.append(column.timestamp < until)
    found = select(func.min(column.seq), func.max(column.seq)).where(*conditions)
    lowest, highest = session.execute(on_index(found, "ix_events_topic_timestamp")).one()
    return None if lowest is None else (lowest, highest)


@dataclass(frozen=True)
class Scan:
    """What one walk along a topic's index found: the matching seqs in walk order, and
    ``reached``: every match from the walk's start through this seq is among them
    (None: the walk got to the end of its range)."""

    seqs: list[int]
    reached: int | None


def scan_seqs(
    session: Session,
    topic: str,
    low: int,
    high: int,
    *,
    key: str | None = None,
    conditions: Sequence = (),
    descending: bool = False,
    limit: int,
    budget: int,
) -> Scan:
    """Walk ``topic``'s events (of ``key`` when given) with ``low < seq <= high``, upward
    or downward, and return up to ``limit`` + 1 of those matching ``conditions``.

    Without conditions every entry walked matches, so the walk reads ``limit`` + 1
    entries of the index and no rows.  With them it reads at most ``budget``.
    """
    column = events_table.c
    walk = [column.topic == topic, column.seq > low, column.seq <= high]
    index = "ix_events_topic_seq"
    if key is not None:
        walk.append(column.key == key)
        index = "ix_events_topic_key_seq"
    order = column.seq.desc() if descending else column.seq.asc()
    stop = None
    if conditions:
        last_read = select(column.seq).where(*walk).order_by(order).offset(budget - 1).limit(1)
        stop = session.scalar(on_index(last_read, index))
        if stop is not None:
            walk.append(column.seq >= stop if descending else column.seq <= stop)
    found = select(column.seq).where(*walk, *conditions).order_by(order).limit(limit + 1)
    seqs = list(session.scalars(on_index(found, index)))
    return Scan(seqs, seqs[-1] if len(seqs) > limit else stop)


def events_at(session: Session, seqs: Iterable[int], whole: bool) -> list[StoredEvent]:
    """The events of ``seqs``, oldest first, each with ``prev``.

    ``whole``: the page holds every event of its topics between its first and last
    (no filter left any out), so ``prev`` comes from the page, as in a replay.  Else
    the event before one on its topic is often not in the page, and each is looked
    up: one step back along (topic, seq), many to a statement.  (A correlated
    subquery would do it in one, but MariaDB walks the whole topic for each row.)
    """
    column = events_table.c
    rows = session.execute(
        select(events_table).where(column.seq.in_(sorted(set(seqs)))).order_by(column.seq)
    ).all()
    events = readable(rows)
    if whole:
        return with_prev(session, events)
    prevs: list[int | None] = []
    for start in range(0, len(events), PREV_LOOKS_PER_STATEMENT):
        looks = [
            select(func.max(column.seq))
            .where(column.topic == event.topic, column.seq < event.seq)
            .scalar_subquery()
            for event in events[start : start + PREV_LOOKS_PER_STATEMENT]
        ]
        prevs.extend(session.execute(select(*looks)).one())
    return [
        StoredEvent(e.seq, e.envelope, prev=prev or 0)
        for e, prev in zip(events, prevs, strict=True)
    ]


def oldest_seq(session: Session) -> int | None:
    """The oldest seq the log still holds (None: it is empty); retention prunes below it."""
    return session.scalar(select(func.min(events_table.c.seq)))
