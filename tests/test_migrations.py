"""Migrations: the same schema on SQLite and on the MySQL-compatible server, both ways."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect
from sqlalchemy.types import (
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)

from pulseboard import create_app
from pulseboard.extensions import db

TABLES = {"users", "oauth_identities", "sessions", "events", "api_tokens", "dashboards"}


def migrated_app(url: str):
    app = create_app({"APP_ENV": "test", "DATABASE_URL": url})
    with app.app_context():
        upgrade()
    return app


def type_family(column_type) -> str:
    """A column type in a form both databases share (MySQL keeps BOOLEAN as TINYINT(1))."""
    if isinstance(column_type, Boolean) or (
        isinstance(column_type, SmallInteger | Integer)
        and getattr(column_type, "display_width", None) == 1
    ):
        return "boolean"
    for family, kind in (
        ("integer", BigInteger),
        ("integer", Integer),
        ("datetime", DateTime),
        ("text", Text),
        ("binary", LargeBinary),
    ):
        if isinstance(column_type, kind):
            return family
    if isinstance(column_type, String):
        # MySQL's MEDIUMTEXT is a String without a length, not a Text.
        return f"string({column_type.length})" if column_type.length else "text"
    return type(column_type).__name__.lower()


def describe(url: str) -> dict:
    """Tables, columns, indexes, unique constraints and foreign keys, database-neutral."""
    engine = create_engine(url)
    inspector = inspect(engine)
    schema = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        uniques = {
            (u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)
        }
        schema[table] = {
            "columns": {
                c["name"]: (type_family(c["type"]), c["nullable"])
                for c in inspector.get_columns(table)
            },
            "primary_key": tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
            # MySQL lists each unique constraint again as a unique index; count it once.
            "indexes": {
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
                if (i["name"], tuple(i["column_names"])) not in uniques
            },
            "uniques": uniques,
            "foreign_keys": {
                (
                    fk["name"],
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    fk["options"].get("ondelete"),
                )
                for fk in inspector.get_foreign_keys(table)
            },
        }
    engine.dispose()
    return schema


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'migrated.db'}"


def test_migrations_upgrade_and_downgrade_cleanly_on_sqlite(sqlite_url):
    app = migrated_app(sqlite_url)
    assert set(describe(sqlite_url)) == TABLES
    with app.app_context():
        downgrade(revision="base")
    assert describe(sqlite_url) == {}
    with app.app_context():
        upgrade()
    assert set(describe(sqlite_url)) == TABLES


def test_migrations_upgrade_and_downgrade_cleanly_on_mysql(mysql_url):
    app = migrated_app(mysql_url)
    assert set(describe(mysql_url)) == TABLES
    with app.app_context():
        downgrade(revision="base")
    assert describe(mysql_url) == {}
    with app.app_context():
        upgrade()
    assert set(describe(mysql_url)) == TABLES


def test_sqlite_and_mysql_end_up_with_the_same_schema(sqlite_url, mysql_url):
    migrated_app(sqlite_url)
    migrated_app(mysql_url)
    on_sqlite, on_mysql = describe(sqlite_url), describe(mysql_url)
    for table in TABLES:
        assert on_sqlite[table] == on_mysql[table], table
    assert on_sqlite["events"]["indexes"] == {
        ("ix_events_stored_at", ("stored_at",), False),
        ("ix_events_topic_seq", ("topic", "seq"), False),
        ("ix_events_topic_key_seq", ("topic", "key", "seq"), False),
        ("ix_events_topic_timestamp", ("topic", "timestamp"), False),
    }
    # An event id is unique within its topic only.
    assert on_sqlite["events"]["uniques"] == {("uq_events_topic_event_id", ("topic", "event_id"))}


def test_mysql_tables_are_innodb_in_utf8mb4(mysql_url):
    migrated_app(mysql_url)
    engine = create_engine(mysql_url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT table_name, engine, table_collation FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name != 'alembic_version'"
        ).all()
    engine.dispose()
    assert {row[0] for row in rows} == TABLES
    assert all(row[1] == "InnoDB" and row[2].startswith("utf8mb4") for row in rows)


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_models_and_migrations_agree(backend, request):
    """What the models declare is what the migrations build: no pending autogenerate."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = request.getfixturevalue(f"{backend}_url")
    app = migrated_app(url)
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []
