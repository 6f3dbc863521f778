"""The event log on SQLite and on MariaDB: dedupe, order, replay queries, retention."""

from dataclasses import replace
from datetime import timedelta

import pytest
from flask_migrate import upgrade
from sqlalchemy import select, update

from pulseboard import create_app
from pulseboard.database import utcnow
from pulseboard.events import store
from pulseboard.events.envelope import new_envelope
from pulseboard.extensions import db
from pulseboard.models import Event


@pytest.fixture(params=["sqlite", "mysql"])
def session(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
    else:
        url = request.getfixturevalue("mysql_url")
    app = create_app({"APP_ENV": "test", "DATABASE_URL": url})
    with app.app_context():
        upgrade()
        yield db.session
        db.session.remove()
        db.engine.dispose()


def envelopes(count, topic="market.ticks", prefix="e"):
    return [
        replace(new_envelope(topic, "tick", {"n": n}, key=f"K{n % 3}"), id=f"{prefix}{n}")
        for n in range(count)
    ]


def test_a_batch_is_stored_in_order_with_increasing_seq(session):
    stored = store.store_batch(session, envelopes(5))
    session.commit()
    assert [event.id for event in stored] == ["e0", "e1", "e2", "e3", "e4"]
    seqs = [event.seq for event in stored]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert stored[0].as_dict()["payload"] == {"n": 0}
    assert stored[0].as_dict()["key"] == "K0"


def test_a_redelivered_event_keeps_its_first_seq(session):
    first = store.store_batch(session, envelopes(3))
    session.commit()
    again = store.store_batch(session, envelopes(3) + envelopes(1, prefix="new"))
    session.commit()
    assert {e.id: e.seq for e in again if e.id != "new0"} == {e.id: e.seq for e in first}
    assert session.scalar(select(db.func.count(Event.seq))) == 4


def test_duplicates_inside_one_batch_are_stored_once(session):
    batch = envelopes(2)
    stored = store.store_batch(session, [batch[0], batch[1], batch[0]])
    session.commit()
    assert [event.id for event in stored] == ["e0", "e1"]


def test_an_id_is_unique_within_its_topic_not_across_topics(session):
    """The id is the producer's idempotency key within its topic: no topic shadows another."""
    market = store.store_batch(session, envelopes(1, topic="market.ticks", prefix="x"))
    session.commit()
    other = store.store_batch(session, envelopes(1, topic="other.feed", prefix="x"))
    session.commit()
    again = store.store_batch(session, envelopes(1, topic="other.feed", prefix="x"))
    session.commit()
    assert other[0].seq != market[0].seq and again[0].seq == other[0].seq
    rows = session.execute(select(Event.seq, Event.topic, Event.event_id).order_by(Event.seq))
    assert [tuple(row) for row in rows] == [
        (market[0].seq, "market.ticks", "x0"),
        (other[0].seq, "other.feed", "x0"),
    ]


def test_ids_that_differ_only_in_case_are_different_events(session):
    lower, upper = envelopes(1, prefix="evt-a")[0], envelopes(1, prefix="EVT-A")[0]
    stored = store.store_batch(session, [lower])
    stored += store.store_batch(session, [upper])
    session.commit()
    assert [event.id for event in stored] == ["evt-a0", "EVT-A0"]
    assert session.scalar(select(db.func.count(Event.seq))) == 2


def test_events_since_returns_later_events_on_the_asked_topics_only(session):
    ticks = store.store_batch(session, envelopes(4))
    store.store_batch(session, envelopes(3, topic="system.metrics", prefix="m"))
    session.commit()
    page = store.events_since(session, ticks[1].seq, ["market.ticks"], limit=10)
    assert [event.id for event in page.events] == ["e2", "e3"]
    assert page.gap is False
    limited = store.events_since(session, 0, ["market.ticks", "system.metrics"], limit=5)
    assert len(limited.events) == 5
    assert [e.seq for e in limited.events] == sorted(e.seq for e in limited.events)
    assert store.events_since(session, 0, [], limit=5).events == []


def test_pruning_by_count_keeps_the_newest(session):
    stored = store.store_batch(session, envelopes(10))
    session.commit()
    assert store.prune(session, max_age=None, max_count=4) == 6
    remaining = session.scalars(select(Event.event_id).order_by(Event.seq)).all()
    assert remaining == ["e6", "e7", "e8", "e9"]
    # A client that last saw e2 asks for more: e3..e5 are gone, and it is told so.
    page = store.events_since(session, stored[2].seq, ["market.ticks"])
    assert page.gap is True
    assert [event.id for event in page.events] == ["e6", "e7", "e8", "e9"]
    # A client that saw e6 lost nothing.
    assert store.events_since(session, stored[6].seq, ["market.ticks"]).gap is False


def test_pruning_by_age_removes_old_events_only(session):
    store.store_batch(session, envelopes(6))
    session.commit()
    old = utcnow() - timedelta(days=8)
    session.execute(update(Event).where(Event.event_id.in_(["e0", "e1"])).values(stored_at=old))
    session.commit()
    assert store.prune(session, max_age=timedelta(days=7), max_count=None) == 2
    assert store.prune(session, max_age=timedelta(days=7), max_count=None) == 0
    assert session.scalar(select(db.func.count(Event.seq))) == 4


def test_pruning_deletes_the_oldest_in_slices_and_keeps_newer_events(session, monkeypatch):
    monkeypatch.setattr(store, "PRUNE_SLICE", 3)
    store.store_batch(session, envelopes(10))
    session.commit()
    old = utcnow() - timedelta(days=8)
    too_old = [f"e{n}" for n in range(7)]
    session.execute(update(Event).where(Event.event_id.in_(too_old)).values(stored_at=old))
    session.commit()
    # Each slice is its own transaction: the consumer can stop between two.
    assert list(store.prune_slices(session, max_age=timedelta(days=7), max_count=None)) == [3, 3, 1]
    remaining = session.scalars(select(Event.event_id).order_by(Event.seq)).all()
    assert remaining == ["e7", "e8", "e9"]


def test_events_since_on_several_topics_takes_the_oldest_of_all_of_them(session):
    store.store_batch(session, envelopes(6, "market.ticks", "t"))
    store.store_batch(session, envelopes(2, "system.alerts", "a"))
    store.store_batch(session, envelopes(3, "market.ticks", "u"))
    session.commit()
    page = store.events_since(session, 0, ["system.alerts", "market.ticks", "sys.none"], limit=7)
    ids = [event.id for event in page.events]
    assert ids == ["t0", "t1", "t2", "t3", "t4", "t5", "a0"]
    rest = store.events_since(session, page.events[-1].seq, ["market.ticks", "system.alerts"])
    assert [event.id for event in rest.events] == ["a1", "u0", "u1", "u2"]
    assert [event.prev for event in rest.events][:2] == [page.events[-1].seq, page.events[5].seq]


def test_a_batch_on_many_topics_links_each_to_its_topics_last_event_in_one_statement(
    session, monkeypatch
):
    earlier = store.store_batch(session, envelopes(2, "market.a", "a") + envelopes(1, "market.b"))
    session.commit()
    mixed = []
    for n in range(3):
        mixed += envelopes(1, "market.a", f"a-new{n}-") + envelopes(1, "market.c", f"c{n}-")
    mixed += [replace(e, topic=f"market.t{n}") for n, e in enumerate(envelopes(6, prefix="t"))]
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    monkeypatch.setattr(store, "PREV_LOOKS_PER_STATEMENT", 3)  # 8 topics: three statements
    engine = session.get_bind()
    db.event.listen(engine, "before_cursor_execute", count)
    try:
        stored = store.store_batch(session, mixed)
    finally:
        db.event.remove(engine, "before_cursor_execute", count)
    session.commit()
    by_id = {event.id.removesuffix("-0"): event for event in stored}
    a_last = earlier[1].seq
    assert [by_id[f"a-new{n}"].prev for n in range(3)] == [
        a_last,
        by_id["a-new0"].seq,
        by_id["a-new1"].seq,
    ]
    assert [by_id[f"c{n}"].prev for n in range(3)] == [0, by_id["c0"].seq, by_id["c1"].seq]
    assert all(by_id[f"t{n}"].prev == 0 for n in range(6))
    # The insert, the seqs, then the topics' last events: 8 topics in ceil(8 / 3) looks.
    assert len(statements) == 2 + 3
