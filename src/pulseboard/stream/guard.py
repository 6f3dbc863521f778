"""Bind each Engine.IO connection to the browser session or read token that opened it.

Engine.IO identifies a connection by its ``sid`` alone.  A sid copied into
another browser (or another user's cookie jar) would otherwise let that
browser read the stream; this middleware refuses any request for a known sid
that does not carry the session cookie the connection was opened with.

A read token's connection has no cookie, and a client cannot always repeat its
token (a browser's WebSocket sends no header of its own): the token proves who
connects in the handshake, and from then on the sid is the connection's secret,
as for any Socket.IO client.  What such a request may not do is come as someone
else: one with a session cookie, or with ``Authorization: Bearer`` of another
token, is refused.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from werkzeug.http import parse_cookie

from ..api.tokens import hash_token
from ..sessions import store_id
from .state import registry

TOKEN_BINDING_PREFIX = "token:"  # noqa: S105 - a label, not a secret


def token_binding(token_hash: str) -> str:
    """The key a read token's connection is bound to: derived from the token's hash, so
    a request can be checked against it without the database."""
    return f"{TOKEN_BINDING_PREFIX}{token_hash}"


class SessionBoundSockets:
    def __init__(self, wsgi_app, cookie_name: str, path: str = "/socket.io/"):
        self.wsgi_app = wsgi_app
        self.cookie_name = cookie_name
        self.path = path

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(self.path):
            sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [None])[0]
            expected = registry.session_of_eio.get(sid) if sid else None
            if expected is not None and not self._may_use(environ, expected):
                start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"this connection belongs to another session or token"]
        return self.wsgi_app(environ, start_response)

    def _may_use(self, environ, expected: str) -> bool:
        presented = self._session_key(environ) or self._token_key(environ)
        if expected.startswith(TOKEN_BINDING_PREFIX):
            return presented is None or presented == expected
        return presented == expected

    def _session_key(self, environ) -> str | None:
        # Read as Flask reads it for the session itself: one parser, one answer.
        sid = parse_cookie(environ).get(self.cookie_name)
        return store_id(sid) if sid is not None else None

    def _token_key(self, environ) -> str | None:
        scheme, _, clear = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not clear.strip():
            return None
        return token_binding(hash_token(clear.strip()))
