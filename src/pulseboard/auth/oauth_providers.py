"""The provider side of OAuth sign-in: Authlib clients and what each provider says about a user.

Clients are registered on first use, once per app, only for the providers that
``config.OAUTH_PROVIDERS`` turned on.  Each provider's answer is reduced to one
``Profile``: subject, email, whether the provider vouches for that email, name.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from flask import current_app, session
from joserfc import jwt
from joserfc.jwk import ECKey

from ..oauth_config import MICROSOFT_TENANT_ALIASES

_REGISTRY_KEY = "authlib.integrations.flask_client"
_registry_lock = threading.Lock()
# Apple accepts client secrets valid up to six months; a short life limits the
# damage of a leaked one, and a fresh one is made a minute before it runs out.
APPLE_SECRET_LIFETIME = 15 * 60
APPLE_SECRET_MARGIN = 60


@dataclass(frozen=True)
class Profile:
    subject: str
    email: str | None
    email_verified: bool
    display_name: str | None


class AppleOAuth2App(FlaskOAuth2App):
    """Apple's client secret is an ES256 JWT signed with the team's key, made at runtime."""

    _cached_secret: tuple[str, float] | None = None

    @property
    def client_secret(self) -> str:
        cached = self._cached_secret
        if cached is None or cached[1] - time.time() < APPLE_SECRET_MARGIN:
            settings = current_app.config["OAUTH_PROVIDERS"]["apple"]
            now = int(time.time())
            claims = {
                "iss": settings["team_id"],
                "iat": now,
                "exp": now + APPLE_SECRET_LIFETIME,
                # Apple wants its own issuer as audience; taken from the discovery
                # document, so a stand-in provider gets its own.
                "aud": self.load_server_metadata()["issuer"],
                "sub": settings["client_id"],
            }
            key = ECKey.import_key(settings["private_key"])
            secret = jwt.encode({"alg": "ES256", "kid": settings["key_id"]}, claims, key)
            cached = self._cached_secret = (secret, claims["exp"])
        return cached[0]

    @client_secret.setter
    def client_secret(self, value) -> None:
        # BaseApp.__init__ assigns the configured secret (None); the property makes its own.
        pass


def oauth_registry() -> OAuth:
    """This app's Authlib registry, made and filled on first use."""
    app = current_app._get_current_object()
    with _registry_lock:
        registry = app.extensions.get(_REGISTRY_KEY)
        if registry is None:
            registry = OAuth(app)
            for name, settings in app.config["OAUTH_PROVIDERS"].items():
                _register(registry, name, settings)
    return registry


def _register(registry: OAuth, name: str, settings: dict) -> None:
    client_kwargs = {"scope": settings["scope"], "code_challenge_method": "S256"}
    options: dict = {}
    if settings["kind"] == "oidc":
        options["server_metadata_url"] = settings["server_metadata_url"]
    else:
        options["authorize_url"] = settings["authorize_url"]
        options["access_token_url"] = settings["token_url"]
    if name == "apple":
        # Apple reads the secret from the form body only.
        client_kwargs["token_endpoint_auth_method"] = "client_secret_post"  # noqa: S105 (a name)
        options["client_cls"] = AppleOAuth2App
    registry.register(
        name,
        client_id=settings["client_id"],
        client_secret=settings["client_secret"],
        client_kwargs=client_kwargs,
        **options,
    )


def authorize_params(name: str) -> dict:
    """Extra parameters for the authorization request."""
    if name == "apple":
        # Apple posts the answer back (it includes the name only in that form).
        return {"response_mode": "form_post"}
    return {}


def exchange_code(client: FlaskOAuth2App, name: str, code: str | None, state_data: dict):
    """Trade the code for tokens; for OIDC providers, also validate the id_token.

    The id_token must be there, signed by a key from the provider's JWKS, for this
    client (aud), from the right issuer, fresh, and carrying the nonce we sent.
    """
    if not code:
        raise OAuthError(error="missing_code", description="No authorization code returned")
    params = {"code": code, "redirect_uri": state_data["redirect_uri"]}
    if state_data.get("code_verifier"):
        params["code_verifier"] = state_data["code_verifier"]
    token = client.fetch_access_token(**params)
    claims = None
    if current_app.config["OAUTH_PROVIDERS"][name]["kind"] == "oidc":
        if "id_token" not in token:
            raise OAuthError(error="missing_id_token", description="No id_token returned")
        claims = client.parse_id_token(
            token, nonce=state_data["nonce"], claims_options=_claims_options(client, name)
        )
    return token, claims


def _claims_options(client: FlaskOAuth2App, name: str) -> dict:
    return {**_issuer_option(client, name), "aud": _audience_option(client.client_id)}


def _audience_option(client_id: str) -> dict:
    """The id_token must be for this client alone.

    Authlib compares aud with the client only through azp: a token for another
    client that names this one as azp would pass.  Nor is any other audience
    trusted next to this one (OpenID Connect Core 3.1.3.7).
    """

    def only_this_client(claims, value) -> bool:
        return value == client_id or value == [client_id]

    return {"essential": True, "validate": only_this_client}


def _issuer_option(client: FlaskOAuth2App, name: str) -> dict:
    issuer = client.load_server_metadata()["issuer"]
    if name == "google":
        # Google documents both spellings of its issuer in id_tokens.
        return {"iss": {"essential": True, "values": [issuer, "accounts.google.com"]}}
    if name != "microsoft":
        return {"iss": {"essential": True, "value": issuer}}
    tenant = current_app.config["OAUTH_PROVIDERS"]["microsoft"]["tenant"]

    def tenant_issuer(claims, value) -> bool:
        # Multi-tenant metadata says ".../{tenantid}/v2.0": the issuer must be that
        # template with the token's own tenant (tid) in it, so one tenant cannot
        # mint tokens that pass as another's.
        tid = claims.get("tid")
        if not tid or value != issuer.replace("{tenantid}", str(tid)):
            return False
        return tenant.lower() in MICROSOFT_TENANT_ALIASES or tid == tenant

    return {"iss": {"essential": True, "validate": tenant_issuer}}


def fetch_profile(client: FlaskOAuth2App, name: str, token: dict, claims, extra: dict) -> Profile:
    """What the provider says about the user, in one shape for every provider."""
    if name == "github":
        user = client.get(_setting(name, "userinfo_url"), token=token).json()
        emails = client.get(_setting(name, "emails_url"), token=token).json()
        primary = next((e for e in emails if e.get("primary") and e.get("verified")), None)
        return Profile(
            subject=str(user["id"]),
            email=primary["email"] if primary else None,
            email_verified=primary is not None,
            display_name=user.get("name") or user.get("login"),
        )
    if name == "facebook":
        user = client.get(_setting(name, "userinfo_url"), token=token).json()
        # Facebook returns an email without saying whether it was confirmed (an
        # account can list an address its owner never proved), so it never links
        # an existing account by itself.
        return Profile(str(user["id"]), user.get("email"), False, user.get("name"))
    if name == "apple":
        # The name comes once, in the first sign-in's form post, never in the token.
        name_parts = (extra.get("user") or {}).get("name") or {}
        full_name = " ".join(
            filter(None, [name_parts.get("firstName"), name_parts.get("lastName")])
        )
        return Profile(
            str(claims["sub"]),
            claims.get("email"),
            _is_true(claims.get("email_verified")),
            full_name or None,
        )
    if name == "microsoft":
        # Microsoft's email claim is whatever the tenant admin typed; only the
        # optional xms_edov claim says the domain owner verified it.
        verified = _is_true(claims.get("xms_edov")) or _is_true(claims.get("email_verified"))
        return Profile(str(claims["sub"]), claims.get("email"), verified, claims.get("name"))
    return Profile(
        str(claims["sub"]),
        claims.get("email"),
        _is_true(claims.get("email_verified")),
        claims.get("name"),
    )


def apple_user_field(raw: str | None) -> dict:
    """Apple's ``user`` form field (JSON), or {} when absent or malformed."""
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def pop_state_data(client: FlaskOAuth2App, state: str | None) -> dict | None:
    """The data saved at the start of this flow, removed so it serves once."""
    if not state:
        return None
    data = client.framework.get_state_data(session, state)
    client.framework.clear_state_data(session, state)
    return data


def _setting(name: str, key: str) -> str:
    return current_app.config["OAUTH_PROVIDERS"][name][key]


def _is_true(value) -> bool:
    # Apple sends email_verified as the string "true" in some tokens.
    return value is True or (isinstance(value, str) and value.lower() == "true")
