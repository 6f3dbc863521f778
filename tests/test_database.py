"""SQLite as a product mode: foreign keys enforced, WAL, busy timeout, and an honest warning."""

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from pulseboard.extensions import db
from pulseboard.models import OAuthIdentity, User


def pragma(app, name):
    with app.app_context(), db.engine.connect() as connection:
        return connection.execute(text(f"PRAGMA {name}")).scalar()


def test_sqlite_connections_enforce_foreign_keys_use_wal_and_wait_for_locks(app):
    assert pragma(app, "foreign_keys") == 1
    assert pragma(app, "journal_mode") == "wal"
    assert pragma(app, "busy_timeout") == 15000


def test_sqlite_rejects_an_identity_for_a_user_that_does_not_exist(app):
    with app.app_context():
        db.session.add(OAuthIdentity(provider="github", subject="42", user_id=999))
        with pytest.raises(IntegrityError):
            db.session.commit()


def test_deleting_a_user_deletes_their_identities_in_the_database(app, make_user):
    user_id = make_user()
    with app.app_context():
        db.session.add(OAuthIdentity(provider="github", subject="42", user_id=user_id))
        db.session.commit()
        # Deleted with SQL, not through the ORM: the database's cascade does the work.
        db.session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
        db.session.commit()
        assert db.session.scalar(text("SELECT count(*) FROM oauth_identities")) == 0


def test_start_up_says_that_sqlite_takes_one_writer_at_a_time(make_app, caplog):
    """A warning in production, where SQLite may be a mistake; a note in development."""
    with caplog.at_level(logging.INFO, logger="pulseboard.database"):
        make_app()
    [record] = [r for r in caplog.records if "one writer at a time" in r.getMessage()]
    assert record.levelno == logging.INFO
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pulseboard.database"):
        make_app(APP_ENV="production", SECRET_KEY="s" * 48, BROKER_URL="memory://")
    [record] = [r for r in caplog.records if "one writer at a time" in r.getMessage()]
    assert record.levelno == logging.WARNING


def test_datetimes_go_in_and_come_back_as_utc(app):
    moment = datetime(2026, 11, 26, 14, 3, 7, 123000, tzinfo=UTC)
    with app.app_context():
        db.session.add(User(email="t@example.com", display_name="T", created_at=moment))
        db.session.commit()
        db.session.expire_all()
        stored = db.session.scalar(db.select(User.created_at))
    assert stored == moment
    assert stored.tzinfo is UTC


def test_naive_datetimes_are_refused_instead_of_guessed(app):
    with app.app_context():
        db.session.add(User(display_name="N", created_at=datetime(2026, 1, 1)))
        with pytest.raises(Exception, match="naive datetime"):
            db.session.commit()
