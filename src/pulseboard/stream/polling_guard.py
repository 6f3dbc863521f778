"""Refuse long-polling POSTs that Engine.IO would choke on, before it sees them.

python-engineio answers an oversized polling POST, or one holding a packet a
client may not send, by disconnecting the socket and waiting for the close
packet to be read; on long-polling only the client's next GET reads it, so an
anonymous client that never polls again holds that request, its greenlet and
its descriptor forever (a handful of them freeze a worker).  This door checks
what Engine.IO would otherwise trip over and answers 4xx at once, so no
request to ``/socket.io/`` can leave anything behind.  Nginx caps the body too
(``client_max_body_size`` on the location), as a second wall.

What passes: a body of at most ``max_bytes`` (Engine.IO's own
``max_http_buffer_size``), valid UTF-8, made of packets separated by ``\\x1e``,
each of a type a client sends over polling in Engine.IO 4: close ``1``, pong
``3``, message ``4``, or a base64 binary message ``b``.
"""

from __future__ import annotations

import io
import logging
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

# Engine.IO 4 packet types a client sends in a polling POST (see the module docstring).
CLIENT_PACKET_TYPES = frozenset("134b")
PACKET_SEPARATOR = "\x1e"


class PollingBodyGuard:
    def __init__(self, wsgi_app, max_bytes: int, path: str = "/socket.io/"):
        self.wsgi_app = wsgi_app
        self.max_bytes = max_bytes
        self.path = path

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").startswith(
            self.path
        ):
            refusal = self.check(environ)
            if refusal is not None:
                status, reason = refusal
                sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", ["-"])[0]
                log.info("polling POST for %s refused: %s", sid[:32], reason)
                start_response(
                    status,
                    [
                        ("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(reason) + 1)),
                        # The unread rest of a refused body must not be taken
                        # for the next request on this connection.
                        ("Connection", "close"),
                    ],
                )
                return [reason.encode() + b"\n"]
        return self.wsgi_app(environ, start_response)

    def check(self, environ) -> tuple[str, str] | None:
        """``(status, reason)`` for a body to refuse; None (and the body kept) to pass it."""
        raw_length = environ.get("CONTENT_LENGTH") or ""
        if not raw_length.isdigit():
            return "411 Length Required", "send the body with a Content-Length"
        length = int(raw_length)
        if length > self.max_bytes:
            return "413 Content Too Large", f"body over {self.max_bytes} bytes"
        body = environ["wsgi.input"].read(length)
        if len(body) != length:
            return "400 Bad Request", "body shorter than its Content-Length"
        # Engine.IO reads the body again; hand it what was read.
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return "400 Bad Request", "body is not UTF-8"
        if not text:
            return "400 Bad Request", "empty body"
        for packet in text.split(PACKET_SEPARATOR):
            if not packet or packet[0] not in CLIENT_PACKET_TYPES:
                return "400 Bad Request", "not an Engine.IO 4 client payload"
        return None
