"""The socket guard reads the session cookie as Flask reads it for the session itself."""

from __future__ import annotations

import pytest
from flask import request

from pulseboard.sessions import store_id
from pulseboard.stream.guard import SessionBoundSockets
from pulseboard.stream.state import registry


def answer(guard, cookie: str) -> str:
    environ = {
        "PATH_INFO": "/socket.io/",
        "QUERY_STRING": "EIO=4&transport=polling&sid=eio-cookie-test",
        "HTTP_COOKIE": cookie,
    }
    answered = []
    guard(environ, lambda status, headers: answered.append(status))
    return answered[0]


def passed(environ, start_response):
    start_response("200 OK", [])
    return [b""]


@pytest.mark.parametrize(
    "cookie",
    [
        "{name}=mine; {name}=theirs",  # a second cookie of the same name, set by a sibling host
        "theme=dark; {name}=mine; {name}=theirs; lang=en",
        '{name}="mine"; {name}=theirs',
    ],
)
def test_with_two_session_cookies_the_guard_and_the_session_pick_the_same_one(app, cookie):
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = cookie.format(name=name)
    with app.test_request_context(headers={"Cookie": cookie}):
        read_by_flask = request.cookies.get(name)
    guard = SessionBoundSockets(passed, name)
    try:
        for bound_to in ("mine", "theirs"):
            registry.session_of_eio["eio-cookie-test"] = store_id(bound_to)
            allowed = answer(guard, cookie).startswith("200")
            assert allowed == (bound_to == read_by_flask), (bound_to, read_by_flask)
    finally:
        registry.session_of_eio.pop("eio-cookie-test", None)
