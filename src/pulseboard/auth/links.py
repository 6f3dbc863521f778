"""Signed, expiring, single-use links for email verification and password reset.

A link carries the user id and a fingerprint of the state it is meant to
change (the password hash for a reset, the address and verification time for
a verification).  Using the link changes that state, so the same link no
longer matches: single use without storing anything.  Each purpose has its own
salt, so a verification link can never be replayed as a reset link.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..extensions import db
from ..models import User

VERIFY = "verify-email"
RESET = "reset-password"
CHANGE_EMAIL = "change-email"


class LinkError(ValueError):
    """The link is expired, tampered with, or already used; ``str()`` says which."""


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"pulseboard.{purpose}")


def _fingerprint(user: User, purpose: str) -> str:
    if purpose == RESET:
        state = f"{user.password_hash}|{user.email}"
    else:
        state = f"{user.email}|{user.email_verified_at}"
    return hashlib.sha256(state.encode()).hexdigest()[:24]


def make_link_token(user: User, purpose: str, **extra: str) -> str:
    payload = {**extra, "uid": user.id, "fp": _fingerprint(user, purpose)}
    return _serializer(purpose).dumps(payload)


def _max_age(purpose: str) -> timedelta:
    if purpose == RESET:
        return timedelta(minutes=current_app.config["AUTH_RESET_MINUTES"])
    return timedelta(hours=current_app.config["AUTH_LINK_HOURS"])


def user_for_link(token: str, purpose: str) -> User:
    """The user a valid, unused link was made for; ``LinkError`` otherwise."""
    return read_link(token, purpose)[0]


def read_link(token: str, purpose: str) -> tuple[User, dict]:
    """The user and the data of a valid, unused link; ``LinkError`` otherwise."""
    try:
        data = _serializer(purpose).loads(token, max_age=_max_age(purpose).total_seconds())
    except SignatureExpired:
        raise LinkError("This link has expired. Ask for a new one.") from None
    except BadSignature:
        raise LinkError("This link is not valid. Copy it whole from the email.") from None
    user = db.session.get(User, data.get("uid")) if isinstance(data, dict) else None
    if user is None or data.get("fp") != _fingerprint(user, purpose):
        raise LinkError("This link has already been used. Ask for a new one if you need it.")
    return user, data
