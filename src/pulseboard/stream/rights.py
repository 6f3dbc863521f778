"""Whether a socket's session and rights still hold, asked of the database.

Signing out, ending a session, disabling or demoting a user sends a disconnect
to every instance (``control``), but a message can miss: the embedded bus of a
CLI process reaches no server, and a broker outage drops what was in flight.
So privileged messages check the database before they act, and each web
process sweeps its sockets every ``STREAM_RIGHTS_CHECK_SECONDS``, ending the
ones whose session is gone, whose account is disabled, or whose admin rights
were taken away, and the sockets of read tokens that were revoked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select

from ..extensions import db
from ..models import ApiToken, ServerSession, User
from .periodic import PeriodicCheck
from .state import SocketOwner, registry

log = logging.getLogger(__name__)

# Keys per query: well under every database's limit on an IN list's size.
QUERY_SLICE = 500


def live_rights(session_keys: Iterable[str]) -> dict[str, tuple[int, bool]]:
    """session key → (user id, is admin) for the sessions that still exist, of accounts
    that are not disabled.

    Expiry is not asked: a socket does not slide its session's idle expiry, so an
    open dashboard would be cut at the idle timeout; the session's end (sign-out,
    "sign out everywhere", cleanup of expired ones) deletes the row, and that counts.
    """
    keys = sorted(set(session_keys))
    found: dict[str, tuple[int, bool]] = {}
    for start in range(0, len(keys), QUERY_SLICE):
        rows = db.session.execute(
            select(ServerSession.session_id, User.id, User.is_admin)
            .join(User, ServerSession.user_id == User.id)
            .where(
                ServerSession.session_id.in_(keys[start : start + QUERY_SLICE]),
                User.disabled.is_(False),
            )
        ).all()
        found.update((key, (user_id, bool(is_admin))) for key, user_id, is_admin in rows)
    db.session.remove()  # a sweep must not hold a connection or a stale snapshot
    return found


def live_read_tokens(token_ids: Iterable[int]) -> set[int]:
    """The ids among ``token_ids`` of tokens that are not revoked (only read tokens connect,
    and a token's scope is fixed when it is issued)."""
    ids = sorted(set(token_ids))
    found: set[int] = set()
    for start in range(0, len(ids), QUERY_SLICE):
        found.update(
            db.session.scalars(
                select(ApiToken.id).where(
                    ApiToken.id.in_(ids[start : start + QUERY_SLICE]),
                    ApiToken.revoked_at.is_(None),
                )
            )
        )
    db.session.remove()
    return found


def still_holds(owner: SocketOwner, rights: dict[str, tuple[int, bool]]) -> bool:
    held = rights.get(owner.session_key)
    if held is None or held[0] != owner.user_id:
        return False
    # Rights granted at connect (admin topics, /admin) must still be granted.
    return held[1] or not owner.is_admin


def stale_sockets() -> list[tuple[str, str]]:
    """``(namespace, sid)`` of this process's sockets whose session, rights or token are
    gone."""
    owners = registry.owners()
    if not owners:
        return []
    by_session = [owner for _, _, owner in owners if owner.token_id is None]
    rights = live_rights(owner.session_key for owner in by_session) if by_session else {}
    by_token = [owner.token_id for _, _, owner in owners if owner.token_id is not None]
    tokens = live_read_tokens(by_token) if by_token else set()

    def holds(owner: SocketOwner) -> bool:
        if owner.token_id is not None:
            return owner.token_id in tokens
        return still_holds(owner, rights)

    return [(namespace, sid) for namespace, sid, owner in owners if not holds(owner)]


def end_stale_sockets(socketio) -> int:
    """Disconnect this process's sockets whose session or rights are gone."""
    stale = stale_sockets()
    for namespace, sid in stale:
        log.info("socket %s on %s: session, rights or token gone; disconnecting", sid, namespace)
        socketio.server.disconnect(sid, namespace=namespace, ignore_queue=True)
    return len(stale)


sweeper = PeriodicCheck("rights sweep", "STREAM_RIGHTS_CHECK_SECONDS", end_stale_sockets)
