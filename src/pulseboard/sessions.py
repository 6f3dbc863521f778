"""Server-side sessions in the database, on Flask-Session's machinery.

Flask-Session's own SQLAlchemy backend creates its table at start-up (outside
the migrations, and needing the database just to boot) and keeps nothing but
the data.  This backend uses the migrated ``sessions`` table instead, which also
records the owner, so a user's sessions can be listed and ended, and it stores
only a hash of each session id, so a leaked table hands out no live session.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from flask import Flask, Request, request
from flask_session.base import ServerSideSession, ServerSideSessionInterface
from sqlalchemy import Row, delete, select
from sqlalchemy.exc import SQLAlchemyError

from .database import utcnow
from .extensions import db
from .models import ServerSession

# Requests that never need a session: probes and assets must not touch the database.
SESSIONLESS_PREFIXES = ("/healthz", "/readyz", "/metrics", "/static/", "/brand.css")
SOCKETIO_PATH = "/socket.io/"
SOCKET_SESSION_KEY = "pulseboard.socket_session"
_SESSIONS = ServerSession.__table__
_RECORD = select(_SESSIONS.c.data, _SESSIONS.c.expiry, _SESSIONS.c.created_at)
# Sliding the idle expiry costs a write; do it at most once a minute per session.
REFRESH_INTERVAL = timedelta(minutes=1)

log = logging.getLogger(__name__)


def store_id(sid: str) -> str:
    """The key a session is stored (and its sockets bound) under: a hash of the cookie's
    session id, so the table holds no live session id."""
    return hashlib.sha256(sid.encode()).hexdigest()


class DatabaseSession(ServerSideSession):
    stored_expiry = None
    # True when the database could not be asked (a socket's connect refuses, retryably).
    unreadable = False


class DatabaseSessionInterface(ServerSideSessionInterface):
    session_class = DatabaseSession
    ttl = False  # SQL has no expiry of its own: Flask-Session adds `flask session_cleanup`.

    def __init__(self, app: Flask):
        super().__init__(
            app,
            key_prefix="",
            use_signer=False,
            permanent=True,
            sid_length=32,
            serialization_format="msgpack",
        )
        self.absolute_lifetime = app.config["SESSION_ABSOLUTE_LIFETIME"]

    def _get_store_id(self, sid: str) -> str:
        return store_id(sid)

    def open_session(self, app: Flask, request: Request) -> DatabaseSession:
        # Socket.IO runs every event of a connection in a request context built from
        # the connection's first request (the same environ each time): the session read
        # when it connected serves its later events, without a database read for each.
        # Signing out or disabling an account disconnects its sockets (session_control).
        cached = request.environ.get(SOCKET_SESSION_KEY)
        if cached is not None:
            return cached
        if not request.path.startswith(SOCKETIO_PATH):
            return self._open_session(app, request)
        try:
            session = self._open_session(app, request)
        except SQLAlchemyError as error:
            # Socket.IO opens the session before any handler runs, where an error would
            # leave the client waiting for an answer that never comes. An unreadable
            # session is an anonymous one, marked so that the connect handler refuses
            # with "retry" rather than "sign in"; it is not kept, the next event reads again.
            db.session.rollback()
            log.warning("socket session not read (%s); the connect will be retried", error)
            session = self.session_class(sid=self._generate_sid(self.sid_length), permanent=True)
            session.unreadable = True
            return session
        request.environ[SOCKET_SESSION_KEY] = session
        return session

    def _open_session(self, app: Flask, request: Request) -> DatabaseSession:
        if not request.path.startswith(SESSIONLESS_PREFIXES):
            sid = request.cookies.get(self.get_cookie_name(app))
            record = self._load_record(self._get_store_id(sid)) if sid else None
            if record is not None:
                session = self.session_class(self.serializer.decode(record.data), sid=sid)
                session.stored_expiry = record.expiry
                return session
        return self.session_class(sid=self._generate_sid(self.sid_length), permanent=True)

    def should_set_storage(self, app: Flask, session: DatabaseSession) -> bool:
        if session.modified or session.stored_expiry is None:
            return session.modified
        stored_at = session.stored_expiry - app.permanent_session_lifetime
        return utcnow() - stored_at >= REFRESH_INTERVAL

    def _load_record(self, store_id: str) -> Row | None:
        """The live record for ``store_id`` (its data, expiry and creation time); an idle
        or too old one is deleted instead.

        A Core query of the three columns, not an ORM load: reading the session is
        the largest part of a socket's join (bench/connections.py --profile), and
        nothing here needs a mapped object."""
        record = (
            db.session.connection()
            .execute(_RECORD.where(_SESSIONS.c.session_id == store_id))
            .first()
        )
        if record is None:
            return None
        now = utcnow()
        idle_expired = record.expiry is None or record.expiry <= now
        if idle_expired or record.created_at + self.absolute_lifetime <= now:
            self._delete_session(store_id)
            return None
        return record

    def _retrieve_session_data(self, store_id: str) -> dict | None:
        record = self._load_record(store_id)
        return None if record is None else self.serializer.decode(record.data)

    def _delete_session(self, store_id: str) -> None:
        db.session.execute(delete(ServerSession).filter_by(session_id=store_id))
        db.session.commit()

    def _delete_expired_sessions(self) -> None:
        db.session.execute(delete(ServerSession).where(ServerSession.expiry <= utcnow()))
        db.session.commit()

    def _upsert_session(
        self, session_lifetime: timedelta, session: ServerSideSession, store_id: str
    ) -> None:
        record = db.session.scalar(select(ServerSession).filter_by(session_id=store_id))
        if record is None:
            record = ServerSession(session_id=store_id, created_at=utcnow())
            db.session.add(record)
        record.data = self.serializer.encode(session)
        record.expiry = utcnow() + session_lifetime
        record.last_seen_at = utcnow()
        user_id = session.get("_user_id")
        record.user_id = int(user_id) if user_id is not None else None
        record.ip_address = request.remote_addr
        record.user_agent = (request.user_agent.string or "")[:255] or None
        db.session.commit()
