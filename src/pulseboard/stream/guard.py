"""Bind each Engine.IO connection to the browser session that opened it.

Engine.IO identifies a connection by its ``sid`` alone.  A sid copied into
another browser (or another user's cookie jar) would otherwise let that
browser read the stream; this middleware refuses any request for a known sid
that does not carry the session cookie the connection was opened with.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from ..sessions import store_id
from .state import registry


class SessionBoundSockets:
    def __init__(self, wsgi_app, cookie_name: str, path: str = "/socket.io/"):
        self.wsgi_app = wsgi_app
        self.cookie_name = cookie_name
        self.path = path

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(self.path):
            sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [None])[0]
            expected = registry.session_of_eio.get(sid) if sid else None
            if expected is not None and self._session_key(environ) != expected:
                start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"this connection belongs to another session"]
        return self.wsgi_app(environ, start_response)

    def _session_key(self, environ) -> str | None:
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        morsel = cookie.get(self.cookie_name)
        if morsel is None:
            return None
        return store_id(morsel.value)
