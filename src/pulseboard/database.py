"""Database behaviour that differs between SQLite and MySQL, set once per engine."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import DateTime, event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime stored as a naive one.

    MySQL's DATETIME and SQLite keep no zone, so values go in as naive UTC and
    come back aware; comparing them with ``datetime.now(UTC)`` just works.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        # MySQL drops fractions of a second unless asked; events need milliseconds.
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


# Every table: InnoDB (transactions, foreign keys) in utf8mb4 (all of Unicode).
MYSQL_TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def configure_engine(engine: Engine, production: bool = False) -> None:
    """Apply per-connection settings; say once what SQLite's limits are.

    A warning in production, where it may be a mistake; a note in development,
    where SQLite is the default and a warning at every start would be noise.
    """
    if engine.dialect.name != "sqlite":
        return
    event.listen(engine, "connect", _sqlite_on_connect)
    if engine.url.database not in (None, "", ":memory:"):
        log.log(
            logging.WARNING if production else logging.INFO,
            "SQLite database in use (%s): fine for one web instance and light "
            "traffic, but it takes one writer at a time. Use MySQL for several "
            "instances or a busy event stream.",
            engine.url.database,
        )


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys unless told otherwise, per connection.
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets readers carry on while one writer commits.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()
