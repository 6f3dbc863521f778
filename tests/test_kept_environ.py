"""What a connection keeps of its first request (stream/kept_environ.py)."""

from __future__ import annotations

import io
import sys

from flask import request

from pulseboard.stream.kept_environ import keep_for_events


def first_request(app) -> dict:
    """The environ a connection's first request hands Socket.IO, as gunicorn fills it."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/socket.io/",
        "QUERY_STRING": "EIO=4&transport=polling&t=PbQx1",
        "RAW_URI": "/socket.io/?EIO=4&transport=polling&t=PbQx1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "gunicorn/27.0.1",
        "REMOTE_ADDR": "192.0.2.7",
        "REMOTE_PORT": "53124",
        "HTTP_HOST": "localhost",
        "HTTP_COOKIE": "pulseboard_session=abc",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) " * 4,
        "HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9",
        "HTTP_ORIGIN": "http://localhost",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input": io.BytesIO(b"the request's body reader"),
        "wsgi.errors": io.StringIO(),
        "wsgi.early_hints": lambda headers: None,  # gunicorn's: holds its request, response
        "gunicorn.socket": object(),
        "werkzeug.proxy_fix.orig": {"REMOTE_ADDR": "127.0.0.1"},
        "flask.app": app,
        "pulseboard.stream_join": "a place in the gate",
    }


def test_only_what_later_events_read_is_kept(app):
    environ = first_request(app)
    keep_for_events(environ)
    assert set(environ) == {
        "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
        "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "HTTP_HOST", "HTTP_COOKIE",
        "wsgi.url_scheme", "wsgi.version", "wsgi.multithread", "wsgi.multiprocess",
        "wsgi.run_once", "wsgi.input", "wsgi.errors", "flask.app", "pulseboard.stream_join",
    }  # fmt: skip
    assert environ["wsgi.errors"] is sys.stderr
    assert environ["wsgi.input"].read() == b""


def test_a_request_context_built_from_what_is_kept_reads_host_cookies_and_url(app):
    environ = first_request(app)
    keep_for_events(environ)
    with app.request_context(environ):  # as Flask-SocketIO builds each event's
        assert request.host == "localhost"  # and within TRUSTED_HOSTS, or this fails
        assert request.cookies["pulseboard_session"] == "abc"
        assert request.remote_addr == "192.0.2.7"
        assert request.path == "/socket.io/"
        assert request.get_data() == b""
