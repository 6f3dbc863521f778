"""What a connection keeps of the request that opened it.

python-socketio keeps the WSGI environ of a connection's first request for the
connection's life, and Flask-SocketIO builds the request context of each of its
later events from it.  As the server hands it over, it holds every header the
client sent (a browser sends a dozen, its user agent among them) and, for a
connection that began on long-polling, the server's objects for that request:
its socket, its body reader and buffers.  Once a namespace has answered the
connect, the environ keeps only what a request context and a later connect
read: the URL and host (Flask checks the host against ``TRUSTED_HOSTS``), the
client's address, its cookies, and the keys the app itself put there (the
session read at connect, the place in the join gate).
"""

from __future__ import annotations

import sys

# What Flask and Werkzeug read to build a request context and match its URL.
REQUEST = frozenset(
    {
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "REMOTE_ADDR",
        "HTTP_HOST",
        "HTTP_COOKIE",  # a later connect on the same connection reads it
        "wsgi.url_scheme",
        "wsgi.version",
        "wsgi.multithread",
        "wsgi.multiprocess",
        "wsgi.run_once",
        "flask.app",  # Flask-SocketIO's: the app whose context each event runs in
    }
)
# The app's own keys (the session read at connect, the join gate's place).
OURS = "pulseboard."


class EmptyInput:
    """A request body that is empty, shared by every kept environ (nothing to close)."""

    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> list:
        return []

    def __iter__(self):
        return iter(())


EMPTY_INPUT = EmptyInput()


def keep_for_events(environ: dict) -> None:
    """Shrink ``environ``, in place, to what the connection's later events read."""
    kept = {
        name: value for name, value in environ.items() if name in REQUEST or name.startswith(OURS)
    }
    environ.clear()  # frees the table: a dict never shrinks as keys are popped
    environ.update(kept)
    environ["wsgi.input"] = EMPTY_INPUT
    environ["wsgi.errors"] = sys.stderr
