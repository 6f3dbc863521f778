"""Retention in the consumer: a backlog of old events is pruned a little at a time,
between batches, so new events never wait for all of it."""

from dataclasses import replace
from datetime import timedelta

import pytest
from flask_migrate import upgrade
from sqlalchemy import select, update

from pulseboard import create_app
from pulseboard.database import utcnow
from pulseboard.events import consumer, store
from pulseboard.events.consumer import EventConsumer
from pulseboard.events.envelope import new_envelope
from pulseboard.extensions import db
from pulseboard.models import Event


@pytest.fixture
def app(tmp_path):
    app = create_app({"APP_ENV": "test", "DATABASE_URL": f"sqlite:///{tmp_path / 'log.db'}"})
    with app.app_context():
        upgrade()
        events = [replace(new_envelope("market.ticks", "tick", {}), id=f"e{n}") for n in range(7)]
        store.store_batch(db.session, events)
        old = utcnow() - timedelta(days=8)
        too_old = [f"e{n}" for n in range(5)]
        db.session.execute(update(Event).where(Event.event_id.in_(too_old)).values(stored_at=old))
        db.session.commit()
        db.session.remove()
    return app


def remaining(app) -> list[str]:
    with app.app_context():
        return db.session.scalars(select(Event.event_id).order_by(Event.seq)).all()


def test_a_pruning_turn_that_runs_out_of_time_goes_on_at_the_next_idle_poll(app, monkeypatch):
    monkeypatch.setattr(store, "PRUNE_SLICE", 2)
    monkeypatch.setattr(consumer, "PRUNE_TURN_SECONDS", 0)  # every slice takes too long
    events = EventConsumer(app, emitter=None, prune_interval=300)
    events.retention = (timedelta(days=7), None)

    events._prune_if_due()
    assert remaining(app) == ["e2", "e3", "e4", "e5", "e6"]
    events._prune_if_due()  # due again at once, not in five minutes
    events._prune_if_due()
    assert remaining(app) == ["e5", "e6"]


def test_a_pruning_turn_with_time_left_prunes_everything_due(app, monkeypatch):
    monkeypatch.setattr(store, "PRUNE_SLICE", 2)
    events = EventConsumer(app, emitter=None, prune_interval=300)
    events.retention = (timedelta(days=7), None)

    events._prune_if_due()
    assert remaining(app) == ["e5", "e6"]
    events._prune_if_due()  # next one in five minutes
    assert remaining(app) == ["e5", "e6"]
