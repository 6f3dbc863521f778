"""A real OAuth 2.0 / OpenID Connect provider on loopback, built on Authlib's server side.

One server plays all five providers under path prefixes: ``/google`` and
``/microsoft/common/v2.0`` (OIDC discovery, RS256 id_tokens, JWKS; Microsoft's
issuer holds ``{tenantid}``), ``/apple`` (form_post answers, and a client secret
that must be an ES256 JWT signed with the key the test generated), ``/github``
(/user and /user/emails) and ``/facebook`` (/me).  PKCE (S256) is required.

The authorize endpoint approves at once as the account the test chose for that
provider (``provider.accounts[name]``); ``deny`` and ``id_token_overrides`` let a
test make the provider refuse or lie, and ``id_token_signers`` lets it hand out an
id_token signed some other way (or not at all).
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo
from flask import Flask, abort, jsonify, request
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from werkzeug.serving import make_server

from .oauth_provider_models import Account, Client, Code

OIDC = ("google", "microsoft", "apple")
# (header, claims) of the id_token the provider would send → the compact token it sends.
IdTokenSigner = Callable[[dict, dict], str]


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code, request):
        data = request.payload.data
        self.server.provider.codes[code] = Code(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=data.get("redirect_uri"),
            scope=data.get("scope", ""),
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            user=request.user,
        )

    def query_authorization_code(self, code, client):
        found = self.server.provider.codes.get(code)
        return found if found and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code):
        self.server.provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.user


class IdTokens(OpenIDCode):
    def __init__(self, provider: LoopbackProvider):
        super().__init__(require_nonce=True)
        self.provider = provider

    def process_token(self, grant, response):
        _, token, _ = response
        if grant.request.client.flavour == "apple" and "openid" not in token.get("scope", ""):
            # Apple sends an id_token for its "name email" scopes too.
            token["id_token"] = self.encode_id_token(token, grant.request)
            return token
        return super().process_token(grant, response)

    def encode_id_token(self, token, request):
        id_token = super().encode_id_token(token, request)
        signer = self.provider.id_token_signers.get(request.client.flavour)
        if signer is None:
            return id_token
        honest = jwt.decode(id_token, self.provider.key)
        return signer(dict(honest.header), dict(honest.claims))

    def exists_nonce(self, nonce, request):
        return any(code.nonce == nonce for code in self.provider.codes.values())

    def resolve_client_private_key(self, client):
        return self.provider.key

    def get_encode_header(self, client):
        return {"alg": "RS256", "kid": self.provider.key.kid}

    def get_client_claims(self, client):
        return {
            "iss": self.provider.issuer(client.flavour),
            "aud": [client.client_id],
            "exp": int(time.time()) + 600,
        }

    def generate_user_info(self, user, scope):
        flavour, account = user
        claims = {"sub": account.sub, "name": account.name}
        if account.email:
            claims["email"] = account.email
            # Apple sends the flag as a string.
            verified = account.email_verified
            claims["email_verified"] = str(verified).lower() if flavour == "apple" else verified
        if flavour == "microsoft":
            claims["tid"] = account.tid
            claims["iss"] = self.provider.issuer("microsoft").replace("{tenantid}", account.tid)
            claims["xms_edov"] = account.email_verified
        claims.update(self.provider.id_token_overrides.get(flavour, {}))
        return UserInfo(claims)


class LoopbackProvider:
    """The provider app and its state: clients, codes, tokens, the signed-in accounts."""

    def __init__(self, apple_public_key: ECKey, apple_team_id: str, apple_key_id: str):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"})
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, tuple[str, Account]] = {}
        self.accounts = {name: Account() for name in (*OIDC, "github", "facebook")}
        self.deny: set[str] = set()
        self.id_token_overrides: dict[str, dict] = {}
        self.id_token_signers: dict[str, IdTokenSigner] = {}
        self.base_url = ""
        self.apple = {
            "public_key": apple_public_key,
            "team_id": apple_team_id,
            "key_id": apple_key_id,
            "verified_secrets": 0,
        }
        self.clients = {
            f"{name}-client": Client(name, f"{name}-client", f"{name}-secret")
            for name in ("google", "microsoft", "github", "facebook")
        }
        self.clients["apple-client"] = Client("apple", "apple-client", apple=self.apple)
        self.app = self._build_app()

    def issuer(self, flavour: str) -> str:
        if flavour == "microsoft":
            return f"{self.base_url}/microsoft/{{tenantid}}/v2.0"
        return f"{self.base_url}/{flavour}"

    def metadata_url(self, flavour: str) -> str:
        prefix = "microsoft/common/v2.0" if flavour == "microsoft" else flavour
        return f"{self.base_url}/{prefix}/.well-known/openid-configuration"

    def _build_app(self) -> Flask:
        app = Flask(__name__)
        server = AuthorizationServer(app, query_client=self.clients.get, save_token=self._save)
        server.provider = self
        server.register_grant(CodeGrant, [IdTokens(self), CodeChallenge(required=True)])

        def prefix(flavour):
            return "microsoft/<tenant>/v2.0" if flavour == "microsoft" else flavour

        for flavour in (*OIDC, "github", "facebook"):
            base = f"/{prefix(flavour)}"
            app.add_url_rule(f"{base}/authorize", f"{flavour}_authorize", self._authorize)
            app.add_url_rule(f"{base}/token", f"{flavour}_token", self._token, methods=["POST"])
        for flavour in OIDC:
            base = f"/{prefix(flavour)}"
            app.add_url_rule(
                f"{base}/.well-known/openid-configuration", f"{flavour}_discovery", self._discovery
            )
            app.add_url_rule(f"{base}/jwks", f"{flavour}_jwks", self._jwks)
        app.add_url_rule("/github/user", "github_user", self._github_user)
        app.add_url_rule("/github/user/emails", "github_emails", self._github_emails)
        app.add_url_rule("/facebook/me", "facebook_me", self._facebook_me)
        self.server = server
        return app

    def _flavour(self) -> str:
        return request.path.strip("/").split("/")[0]

    def _save(self, token, request):
        self.tokens[token["access_token"]] = request.user

    def _discovery(self, tenant=None):
        flavour = self._flavour()
        base = f"{self.base_url}/{'microsoft/' + tenant + '/v2.0' if tenant else flavour}"
        return jsonify(
            issuer=self.issuer(flavour),
            authorization_endpoint=f"{base}/authorize",
            token_endpoint=f"{base}/token",
            jwks_uri=f"{base}/jwks",
            response_types_supported=["code"],
            response_modes_supported=["query", "form_post"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=["RS256"],
            code_challenge_methods_supported=["S256"],
        )

    def _token(self, tenant=None):
        return self.server.create_token_response()

    def _jwks(self, tenant=None):
        return jsonify(KeySet([self.key]).as_dict(private=False))

    def _authorize(self, tenant=None):
        flavour = self._flavour()
        user = None if flavour in self.deny else (flavour, self.accounts[flavour])
        try:
            grant = self.server.get_consent_grant(end_user=user)
        except OAuth2Error as error:
            return self.server.handle_error_response(None, error)
        response = self.server.create_authorization_response(grant_user=user, grant=grant)
        if request.args.get("response_mode") != "form_post" or response.status_code != 302:
            return response
        # Apple's form_post: the browser posts the answer to the redirect URI.
        target = urlsplit(response.location)
        fields = dict(parse_qsl(target.query))
        if "code" in fields:
            account = self.accounts[flavour]
            first, _, last = account.name.partition(" ")
            name = {"firstName": first, "lastName": last}
            fields["user"] = json.dumps({"name": name, "email": account.email})
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        action = html.escape(target._replace(query="").geturl())
        return f'<form method="post" action="{action}">{inputs}</form>'

    def _bearer(self) -> Account:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        found = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if found is None:
            abort(401)
        return found[1]

    def _github_user(self):
        account = self._bearer()
        return jsonify(id=int(account.sub.split("-")[-1]), login="ada", name=account.name)

    def _github_emails(self):
        account = self._bearer()
        primary = {"email": account.email, "primary": True, "verified": account.email_verified}
        return jsonify([*account.extra_emails, primary] if account.email else account.extra_emails)

    def _facebook_me(self):
        account = self._bearer()
        if request.args.get("fields") != "id,name,email":
            abort(400)
        return jsonify(id=account.sub, name=account.name, email=account.email)

    def start(self) -> ServerThread:
        thread = ServerThread(self.app)
        self.base_url = thread.url
        self.apple["audience"] = self.issuer("apple")
        return thread


class ServerThread:
    """A WSGI app on a free loopback port, served from a thread until ``stop()``."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval: shutdown() waits for the loop to look again.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def new_apple_key() -> tuple[ECKey, str]:
    """A fresh P-256 key like the .p8 Apple hands out: (key, PEM text of the private key)."""
    key = ECKey.generate_key("P-256", parameters={"kid": secrets.token_hex(5)})
    return key, key.as_pem(private=True).decode()
