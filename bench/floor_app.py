"""A WSGI app that answers every request as a long-polling response of one packet,
and nothing else: what gunicorn itself costs per request (bench/http_floor.py)."""

from __future__ import annotations

import os

BODY = os.environ.get("FLOOR_BODY", "4").encode()
HEADERS = [
    ("Content-Type", "text/plain; charset=UTF-8"),
    ("Content-Length", str(len(BODY))),
]


def app(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]
