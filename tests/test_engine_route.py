"""Socket.IO's requests reach its server without Engine.IO's WSGI app (stream/engine_route.py)."""

from __future__ import annotations

import json
import socket

from werkzeug.test import EnvironBuilder

from pulseboard.extensions import socketio


def call(app, path: str, **environ) -> tuple[str, bytes, dict]:
    """One request through the whole WSGI stack, as gunicorn hands it over."""
    built = EnvironBuilder(path=path, base_url="http://localhost").get_environ()
    built.update(environ)
    answered = {}

    def start_response(status, headers, exc_info=None):
        answered["status"] = status

    body = b"".join(app(built, start_response))
    return answered["status"], body, built


def test_a_polling_handshake_is_answered_by_socketio_with_the_flask_app_named(app):
    with socket.socket() as gunicorn_socket:
        status, body, environ = call(
            app, "/socket.io/?EIO=4&transport=polling", **{"gunicorn.socket": gunicorn_socket}
        )
    assert status.startswith("200")
    assert body.startswith(b"0")
    opened = json.loads(body[1:])
    assert "websocket" in opened["upgrades"]
    # What Socket.IO keeps for the connection names the app: Flask-SocketIO's
    # handlers push its context from there.
    kept = socketio.server.environ[opened["sid"]]
    assert kept["flask.app"] is app
    # It is a copy: the server's own environ is left as it was, and Engine.IO's WSGI
    # app (which wraps gunicorn's socket for eventlet on every request) was not used.
    assert kept is not environ
    assert "flask.app" not in environ
    assert "eventlet.input" not in environ and "eventlet.input" not in kept


def test_other_paths_still_reach_flask(app):
    status, _, environ = call(app, "/healthz")
    assert status.startswith("200")
    assert "flask.app" not in environ
    status, _, _ = call(app, "/socket.iox")
    assert status.startswith("404")
