"""API tokens: issued once in clear, kept as a hash, scoped to topic patterns.

A token either produces (publishes to its topics through the ingest API) or
reads (streams its topics over Server-Sent Events); never both, so a reader's
token leaking lets no one publish.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..database import utcnow
from ..models import ApiToken
from ..stream.access import patterns_allow
from ..stream.control import disconnect_token

TOKEN_PREFIX = "pbk_"  # noqa: S105 - a label, not a secret
PRODUCE = "produce"
READ = "read"
SCOPES = (PRODUCE, READ)


class TokenError(ValueError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session,
    name: str,
    topics: list[str],
    created_by_id: int | None = None,
    scope: str = PRODUCE,
) -> tuple[ApiToken, str]:
    """Create a token; return the record and the clear token (shown this once)."""
    if scope not in SCOPES:
        raise TokenError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    patterns = [p.strip() for p in topics if p.strip()]
    if not patterns:
        raise TokenError("give at least one topic pattern, e.g. 'market.*'")
    for pattern in patterns:
        if any(ch in pattern for ch in " ,[]!") or len(pattern) > 200:
            raise TokenError(f"{pattern!r} is not a topic pattern like 'market.*'")
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        name=name.strip()[:100] or "unnamed",
        token_hash=hash_token(clear),
        prefix=clear[:12],
        topics=",".join(patterns),
        scope=scope,
        created_by_id=created_by_id,
    )
    session.add(record)
    session.commit()
    return record, clear


def find_active_token(session: Session, clear: str) -> ApiToken | None:
    """The live token matching ``clear``; None when unknown or revoked."""
    if not clear.startswith(TOKEN_PREFIX) or len(clear) > 200:
        return None
    record = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(clear)))
    if record is None or record.revoked_at is not None:
        return None
    return record


def allows_topic(token: ApiToken, topic: str) -> bool:
    """Shell-style patterns: ``market.*`` matches market.ticks; ``*`` matches all."""
    return patterns_allow(token.topic_patterns, topic)


def revoke(session: Session, token_id: int) -> ApiToken:
    """Revoke a token and end its live sockets on every instance (the rights check ends
    them too, should the message be lost)."""
    record = session.get(ApiToken, token_id)
    if record is None:
        raise TokenError(f"no token with id {token_id}")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.commit()
    disconnect_token(record.id)
    return record
