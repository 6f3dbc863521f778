"""The loopback provider's records: the signed-in person, registered clients, issued codes."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from joserfc import jwt
from joserfc.errors import JoseError

TENANT_A = "11111111-1111-1111-1111-111111111111"
TENANT_B = "22222222-2222-2222-2222-222222222222"


@dataclass
class Account:
    """The person signed in at the provider."""

    sub: str = "subject-1"
    email: str | None = "ada@example.com"
    email_verified: bool = True
    name: str = "Ada Lovelace"
    tid: str = TENANT_A  # Microsoft only
    extra_emails: list[dict] = field(default_factory=list)  # GitHub only


@dataclass
class Client(ClientMixin):
    flavour: str
    client_id: str
    secret: str | None = None
    apple: dict | None = None  # team_id, key_id, public key, audience

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return scope

    def check_redirect_uri(self, redirect_uri):
        parts = urlsplit(redirect_uri)
        return parts.hostname == "127.0.0.1" and parts.path == (
            f"/auth/oauth/{self.flavour}/callback"
        )

    def check_client_secret(self, client_secret):
        if self.apple is None:
            return hmac.compare_digest(client_secret or "", self.secret)
        return self._check_apple_secret(client_secret)

    def _check_apple_secret(self, client_secret) -> bool:
        """Apple's rule: ES256 by the team's key (kid), iss=team, sub=client, aud=Apple."""
        try:
            token = jwt.decode(client_secret, self.apple["public_key"], algorithms=["ES256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.apple["team_id"]},
                sub={"essential": True, "value": self.client_id},
                aud={"essential": True, "value": self.apple["audience"]},
                exp={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError):
            return False
        ok = token.header.get("kid") == self.apple["key_id"]
        self.apple["verified_secrets"] += ok
        return ok

    def check_endpoint_auth_method(self, method, endpoint):
        if self.apple is not None:
            return method == "client_secret_post"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: tuple[str, Account]
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None
