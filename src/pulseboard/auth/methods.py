"""Ways a user can sign in, and the rule that one must always remain."""

from __future__ import annotations

from flask import current_app

from ..models import User


def enabled_providers() -> list[str]:
    """OAuth providers with credentials configured (filled in by auth.oauth)."""
    return list(current_app.config.get("OAUTH_PROVIDERS", {}))


def can_remove(user: User, method: str, identity_id: int | None = None) -> bool:
    """Would ``user`` still have a way in without this password or identity?"""
    remaining = []
    if method != "password" and user.password_hash and current_app.config["AUTH_PASSWORD_ENABLED"]:
        remaining.append("password")
    providers = set(enabled_providers())
    for identity in user.identities:
        if identity.id != identity_id and identity.provider in providers:
            remaining.append(identity.provider)
    return bool(remaining)
