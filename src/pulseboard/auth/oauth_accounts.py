"""Which account a provider's answer belongs to: sign in, link, or create (SPEC §3).

Identities are keyed on (provider, subject), never on email.  An email only
joins an existing account when the provider vouches for it; otherwise the
person must sign in another way and link the provider from settings.
"""

from __future__ import annotations

import logging

from flask_login import current_user
from sqlalchemy import select

from ..database import utcnow
from ..extensions import db
from ..models import OAuthIdentity, User
from .fresh import is_fresh
from .oauth_providers import Profile
from .routes import find_user_by_email
from .session_control import end_sessions, mark_fresh, start_session

log = logging.getLogger(__name__)


class Refused(Exception):
    """The callback cannot go on; the message is shown to the person as is."""


def find_identity(provider: str, subject: str) -> OAuthIdentity | None:
    return db.session.scalar(select(OAuthIdentity).filter_by(provider=provider, subject=subject))


def sign_in(provider: str, label: str, profile: Profile) -> str:
    """Sign the person in (cases 1, 3 and 4); return the welcome message."""
    identity = find_identity(provider, profile.subject)
    if identity is not None:
        _start(identity.user, provider, label)
        return f"Signed in with {label}."

    existing = find_user_by_email(profile.email) if profile.email else None
    if existing is not None:
        if not profile.email_verified:
            # Anyone can put someone else's address on an account at some
            # providers; an unproven email must never open an existing account.
            log.info("oauth refused unverified email match provider=%s", provider)
            raise Refused(
                f"An account with this email already exists. Sign in with your password, "
                f"then link {label} from Settings → Linked accounts."
            )
        if existing.email_verified_at is None:
            # Whoever set this account's password never proved the address; the
            # provider just did. Drop that password (and its sessions) so an
            # account pre-registered by someone else cannot be taken over.
            existing.password_hash = None
            existing.email_verified_at = utcnow()
            end_sessions(existing.id)
            log.info("oauth claimed unverified account user=%s provider=%s", existing.id, provider)
        _link(existing, provider, profile)
        _start(existing, provider, label)
        return f"Signed in. {label} is now linked to your account."

    # An unproven address stays on the identity only: on the account it would
    # block its real owner from ever signing up with it.
    verified_email = profile.email.lower() if profile.email and profile.email_verified else None
    user = User(
        email=verified_email,
        display_name=_display_name(profile, label),
        email_verified_at=utcnow() if verified_email else None,
    )
    db.session.add(user)
    _link(user, provider, profile)
    db.session.commit()
    log.info("oauth created user=%s provider=%s", user.id, provider)
    start_session(user, provider)
    return f"Welcome, {user.display_name}."


def link(provider: str, label: str, profile: Profile, user_id: int | None) -> str:
    """Link the provider to the signed-in user who started the flow (case 2)."""
    if not current_user.is_authenticated or current_user.id != user_id:
        raise Refused("Your session changed while linking. Sign in and try again.")
    if not is_fresh():
        raise Refused("Confirm it is you again, then link the account.")
    identity = find_identity(provider, profile.subject)
    if identity is not None:
        if identity.user_id == current_user.id:
            return f"This {label} account is already linked."
        log.info("oauth link refused: identity of another user provider=%s", provider)
        raise Refused(f"This {label} account is already linked to another account.")
    _link(current_user, provider, profile)
    db.session.commit()
    log.info("oauth linked user=%s provider=%s", current_user.id, provider)
    return f"{label} is now linked to your account."


def reauthenticate(provider: str, label: str, profile: Profile, user_id: int | None) -> str:
    """Confirm the signed-in user with one of their own linked identities."""
    identity = find_identity(provider, profile.subject)
    if (
        not current_user.is_authenticated
        or current_user.id != user_id
        or identity is None
        or identity.user_id != current_user.id
    ):
        raise Refused(f"That {label} account is not linked to the account you are signed in to.")
    mark_fresh(provider)
    return "Thanks, you are confirmed."


def _start(user: User, provider: str, label: str) -> None:
    if user.disabled:
        log.info("oauth refused disabled user=%s provider=%s", user.id, provider)
        raise Refused("This account is disabled. Contact the site's administrator.")
    start_session(user, provider)
    log.info("oauth sign-in user=%s provider=%s", user.id, provider)


def _link(user: User, provider: str, profile: Profile) -> None:
    email = profile.email.lower() if profile.email else None
    user.identities.append(OAuthIdentity(provider=provider, subject=profile.subject, email=email))


def _display_name(profile: Profile, label: str) -> str:
    name = (profile.display_name or "").strip()
    if not name and profile.email:
        name = profile.email.split("@", 1)[0]
    return (name or f"{label} user")[:100]
