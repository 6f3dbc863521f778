"""Starting, listing and ending a user's server-side sessions."""

from __future__ import annotations

import time

from flask import current_app, session
from flask_login import login_user, logout_user
from sqlalchemy import delete, select

from .. import metrics
from ..database import utcnow
from ..extensions import db
from ..models import ServerSession, User
from ..stream.control import disconnect_sessions, disconnect_user

# Session keys of our own (Flask-Login keeps "_user_id" and friends).
AUTH_AT = "auth_at"  # when the user last proved who they are (epoch seconds)
AUTH_METHOD = "auth_method"  # "password" or an OAuth provider's name


def start_session(user: User, method: str) -> None:
    """Sign ``user`` in on a fresh session id, so a planted id is worth nothing."""
    # First, so the session is never empty here: regenerate() keeps an empty
    # session's id (an OAuth flow started straight from its link holds nothing
    # by the time its callback signs in).
    login_user(user)
    current_app.session_interface.regenerate(session)
    mark_fresh(method)
    metrics.login(method, succeeded=True)
    user.last_login_at = utcnow()
    db.session.commit()


def mark_fresh(method: str) -> None:
    session[AUTH_AT] = int(time.time())
    session[AUTH_METHOD] = method


def current_store_id() -> str:
    return current_app.session_interface._get_store_id(session.sid)


def sessions_of(user_id: int) -> list[ServerSession]:
    return db.session.scalars(
        select(ServerSession)
        .where(ServerSession.user_id == user_id, ServerSession.expiry > utcnow())
        .order_by(ServerSession.last_seen_at.desc())
    ).all()


def end_sessions(user_id: int, keep_current: bool = False) -> int:
    """Delete a user's server-side sessions (all, or all but this one) and drop their
    live sockets on every instance; return how many sessions ended."""
    condition = ServerSession.user_id == user_id
    if keep_current:
        condition = condition & (ServerSession.session_id != current_store_id())
    keys = db.session.scalars(select(ServerSession.session_id).where(condition)).all()
    db.session.execute(delete(ServerSession).where(condition))
    db.session.commit()
    disconnect_sessions(keys)
    return len(keys)


def end_current_session() -> None:
    """Sign out here: the stored session goes, and so do its live sockets."""
    disconnect_sessions([current_store_id()])
    logout_user()
    # A new id for whatever the browser keeps (the goodbye message);
    # regenerate() deletes the stored session and skips an empty one, so clear after.
    current_app.session_interface.regenerate(session)
    session.clear()


def set_disabled(user: User, disabled: bool) -> None:
    """Disable (or enable) an account; a disabled one loses every session at once."""
    user.disabled = disabled
    db.session.commit()
    if disabled:
        end_sessions(user.id)
        disconnect_user(user.id)
