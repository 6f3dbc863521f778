"""OAuth/OIDC sign-in routes: start, callback (GET, and Apple's form_post), unlink.

The flow's state, nonce, PKCE verifier, ``next`` and intent are kept in the
server-side session under the state value (Authlib's own store), so each
callback can be matched to the one browser session that started it, once.

Intents: ``login`` (default), ``link`` (a signed-in user adds a provider, with a
fresh login) and ``reauth`` (a signed-in user without a password confirms who
they are with a provider already linked to them).
"""

from __future__ import annotations

import logging
import re

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from flask import abort, current_app, flash, redirect, request, url_for
from flask_login import current_user, login_required
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc.errors import JoseError

from .. import metrics
from ..extensions import csrf, db, limiter
from ..models import OAuthIdentity
from ..safe_redirect import local_target
from ..urls import external_url
from . import bp
from . import oauth_accounts as accounts
from .fresh import fresh_login_required
from .methods import can_remove
from .oauth_providers import (
    apple_user_field,
    authorize_params,
    exchange_code,
    fetch_profile,
    oauth_registry,
    pop_state_data,
)

log = logging.getLogger(__name__)

INTENTS = ("login", "link", "reauth")
# Apple's form_post arrives cross-site, so the SameSite=Lax session cookie is not
# sent with it.  The POST view keeps the posted fields in this short-lived signed
# cookie and redirects (303) to the GET callback: a top-level GET navigation
# carries Lax cookies, so the GET sees the session that holds state, nonce and
# PKCE verifier, and the code never appears in a URL or a server log.
APPLE_POST_COOKIE = "oauth_apple_post"
APPLE_POST_MAX_AGE = 300
APPLE_POST_FIELDS = ("code", "state", "user", "error")


def _auth_rate_limit() -> str:
    return current_app.config["AUTH_RATE_LIMIT"]


def provider_settings(provider: str) -> dict:
    settings = current_app.config["OAUTH_PROVIDERS"].get(provider)
    if settings is None:
        abort(404)
    return settings


@bp.get("/oauth/<provider>/start")
def oauth_start(provider: str):
    provider_settings(provider)
    intent = request.args.get("intent", "login")
    if intent not in INTENTS:
        abort(400)
    if intent == "link":
        return fresh_login_required(_redirect_to_provider)(provider, intent)
    if intent == "reauth":
        return login_required(_redirect_to_provider)(provider, intent)
    if current_user.is_authenticated:
        return redirect(local_target(request.args.get("next"), "main.index"))
    return _redirect_to_provider(provider, intent)


def _redirect_to_provider(provider: str, intent: str):
    client = oauth_registry().create_client(provider)
    redirect_uri = external_url("auth.oauth_callback", provider=provider)
    nonce = generate_token(20)
    try:
        found = client.create_authorization_url(
            redirect_uri, nonce=nonce, **authorize_params(provider)
        )
    except (requests.RequestException, ValueError, KeyError, RuntimeError) as error:
        # Usually the discovery document could not be fetched.
        log.error("oauth start failed provider=%s error=%s", provider, type(error).__name__)
        flash(f"{_label(provider)} sign-in is unavailable right now. Try again later.", "danger")
        return redirect(url_for("auth.login"))
    client.save_authorize_data(
        **{
            **found,  # url, state, code_verifier (and nonce for "openid" scopes)
            "redirect_uri": redirect_uri,
            "nonce": nonce,
            "intent": intent,
            "next": local_target(request.args.get("next"), _fallback(intent)),
            "user_id": current_user.id if current_user.is_authenticated else None,
        }
    )
    return redirect(found["url"])


@bp.get("/oauth/<provider>/callback")
@limiter.limit(_auth_rate_limit)
def oauth_callback(provider: str):
    provider_settings(provider)
    fields = request.args.to_dict()
    if provider == "apple" and APPLE_POST_COOKIE in request.cookies:
        fields = _read_apple_post()
    response = _complete(provider, fields)
    if provider == "apple":
        response.delete_cookie(APPLE_POST_COOKIE, path=_apple_callback_path())
    return response


@bp.post("/oauth/apple/callback")
@limiter.limit(_auth_rate_limit)
def oauth_apple_form_post():
    provider_settings("apple")
    # No session, flash or current_user here: the session cookie did not come
    # with this cross-site POST, and touching the session would replace it.
    fields = {key: request.form[key] for key in APPLE_POST_FIELDS if key in request.form}
    response = redirect(url_for("auth.oauth_callback", provider="apple"), code=303)
    response.set_cookie(
        APPLE_POST_COOKIE,
        _apple_serializer().dumps(fields),
        max_age=APPLE_POST_MAX_AGE,
        path=_apple_callback_path(),
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )
    return response


csrf.exempt(oauth_apple_form_post)


def _complete(provider: str, fields: dict):
    label = _label(provider)
    client = oauth_registry().create_client(provider)
    # Always consumed, even on error: a state value serves one callback only.
    state_data = pop_state_data(client, fields.get("state"))
    if fields.get("error"):
        # The provider's error code, reduced to code characters: it lands in logs.
        error = re.sub(r"[^A-Za-z0-9_.-]", "?", fields["error"][:50])
        log.info("oauth provider error provider=%s error=%s", provider, error)
        message = (
            f"{label} sign-in was cancelled."
            if error == "access_denied"
            else f"{label} sign-in failed ({error}). Try again."
        )
        return _fail(message, state_data)
    if state_data is None:
        log.warning("oauth callback with unknown state provider=%s", provider)
        return _fail(f"The {label} sign-in expired or did not start here. Please try again.")
    try:
        token, claims = exchange_code(client, provider, fields.get("code"), state_data)
        extra = {"user": apple_user_field(fields.get("user"))} if provider == "apple" else {}
        profile = fetch_profile(client, provider, token, claims, extra)
    except (OAuthError, JoseError, requests.RequestException, ValueError, KeyError) as error:
        # The class and Authlib's error code only: never tokens, codes or claims.
        code = getattr(error, "error", "") or ""
        log.warning(
            "oauth callback failed provider=%s error=%s %s", provider, type(error).__name__, code
        )
        return _fail(f"{label} sign-in could not be completed. Please try again.", state_data)

    intent = state_data.get("intent", "login")
    try:
        if intent == "link":
            message = accounts.link(provider, label, profile, state_data.get("user_id"))
        elif intent == "reauth":
            message = accounts.reauthenticate(provider, label, profile, state_data.get("user_id"))
        else:
            message = accounts.sign_in(provider, label, profile)
    except accounts.Refused as refusal:
        db.session.rollback()
        return _fail(str(refusal), state_data)
    flash(message, "success")
    return redirect(local_target(state_data.get("next"), _fallback(intent)))


@bp.post("/oauth/<provider>/unlink")
@fresh_login_required
def oauth_unlink(provider: str):
    label = _label(provider) if provider in current_app.config["OAUTH_PROVIDERS"] else provider
    identity_id = request.form.get("identity_id", type=int)
    identity = db.session.get(OAuthIdentity, identity_id) if identity_id else None
    if identity is None or identity.user_id != current_user.id or identity.provider != provider:
        abort(404)
    if not can_remove(current_user, provider, identity.id):
        flash(
            f"{label} cannot be unlinked: it would leave no way to sign in. "
            "Set a password or link another provider first.",
            "danger",
        )
    else:
        db.session.delete(identity)
        db.session.commit()
        log.info("oauth unlinked user=%s provider=%s", current_user.id, provider)
        flash(f"{label} is no longer linked to your account.", "success")
    return redirect(url_for("settings.index", _anchor="linked-accounts"))


@bp.app_context_processor
def linked_account_helpers():
    """What the sign-in buttons and the linked-accounts partial need."""
    providers = current_app.config["OAUTH_PROVIDERS"]
    return {
        "oauth_provider_list": [
            {"name": name, "label": settings["label"], "icon": settings["icon"]}
            for name, settings in providers.items()
        ],
        "oauth_can_unlink": lambda identity: can_remove(
            current_user, identity.provider, identity.id
        ),
        "oauth_label": lambda name: providers[name]["label"] if name in providers else name,
    }


def _fail(message: str, state_data: dict | None = None):
    flash(message, "danger")
    intent = (state_data or {}).get("intent", "login")
    if intent == "login":  # Apple's form_post callback is the one route without <provider>
        metrics.login((request.view_args or {}).get("provider", "apple"), succeeded=False)
    if intent != "login" and current_user.is_authenticated:
        return redirect(local_target(state_data.get("next"), _fallback(intent)))
    return redirect(url_for("auth.login"))


def _fallback(intent: str) -> str:
    return "settings.index" if intent == "link" else "main.index"


def _label(provider: str) -> str:
    return current_app.config["OAUTH_PROVIDERS"][provider]["label"]


def _apple_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="oauth-apple-form-post")


def _apple_callback_path() -> str:
    return url_for("auth.oauth_callback", provider="apple")


def _read_apple_post() -> dict:
    try:
        fields = _apple_serializer().loads(
            request.cookies[APPLE_POST_COOKIE], max_age=APPLE_POST_MAX_AGE
        )
    except BadSignature:
        log.warning("oauth apple form_post cookie invalid or expired")
        return {}
    return fields if isinstance(fields, dict) else {}
