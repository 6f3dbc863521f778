"""Database models: accounts, their sign-in identities, server-side sessions, the event log."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .database import MYSQL_TABLE_OPTIONS, UTCDateTime, utcnow
from .extensions import db

# SQLite only auto-increments an INTEGER PRIMARY KEY, so big ids are plain
# integers there; MySQL gets a real BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Up to 16 MB on MySQL (plain TEXT stops at 64 KB).
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
# Compared byte for byte, as SQLite does: under MySQL's case-insensitive collation
# "evt-A" would count as a repeat of "evt-a" and never be stored.
EventId = String(128).with_variant(mysql.VARCHAR(128, collation="utf8mb4_bin"), "mysql", "mariadb")


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Nullable: a user who signed up through OAuth may have no email at all.
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    welcome_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    theme: Mapped[str] = mapped_column(String(10), default="auto")
    # An IANA zone ("Europe/Paris") for every time shown; "" for the browser's own.
    time_zone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    identities: Mapped[list[OAuthIdentity]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users.
        return not self.disabled

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email or self.display_name!r}>"


class OAuthIdentity(db.Model):
    """One account at an OAuth/OIDC provider, keyed on (provider, subject), never email."""

    __tablename__ = "oauth_identities"
    __table_args__ = (
        UniqueConstraint("provider", "subject"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship(back_populates="identities")


class ServerSession(db.Model):
    """A Flask-Session record, plus the owner so a user's sessions can be listed and ended."""

    __tablename__ = "sessions"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(255), unique=True)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    expiry: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))


class Event(db.Model):
    """The event log: every accepted event once, in the order it was stored (``seq``)."""

    __tablename__ = "events"
    __table_args__ = (
        Index(None, "topic", "seq"),
        # History by key and by time (GET /api/v1/events): see migration 0005.
        Index(None, "topic", "key", "seq"),
        Index(None, "topic", "timestamp"),
        # The producer's id is the idempotency key within its topic: a redelivered
        # event is stored once, and an id used on one topic cannot shadow another's.
        UniqueConstraint("topic", "event_id"),
        MYSQL_TABLE_OPTIONS,
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(EventId)
    topic: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64))
    key: Mapped[str | None] = mapped_column(String(200))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    # The payload as the JSON text it arrived in: encoded once, sent as is.
    payload: Mapped[str] = mapped_column(LongText)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class ApiToken(db.Model):
    """A bearer token, scoped to topic patterns, that may produce or only read; only its hash
    is kept."""

    __tablename__ = "api_tokens"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # sha256 of the token: a copy of the table lets no one publish.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, to tell tokens apart in lists and logs.
    prefix: Mapped[str] = mapped_column(String(16))
    # Comma-separated topic patterns: "market.*,system.metrics".
    topics: Mapped[str] = mapped_column(String(1000))
    # "produce": may publish to its topics (the ingest API); "read": may only read them.
    scope: Mapped[str] = mapped_column(String(16), default="produce", server_default="produce")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def topic_patterns(self) -> list[str]:
        return [pattern for pattern in self.topics.split(",") if pattern]
