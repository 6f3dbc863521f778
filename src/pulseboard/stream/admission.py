"""How many sockets may be joining at once: a reconnect storm is shed, not queued.

When an instance restarts, every client it held comes back within seconds.
Each joining socket costs a handshake, a session read, a subscribe and its
replay; thousands at once share one event loop and one database pool, every
one of them gets slower, the pool's wait runs out and joins fail after
seconds with nothing to show for them (measured: ``bench/storm.py``).

So a process lets at most ``STREAM_JOIN_CONCURRENCY`` sockets join at a time.
A join starts with the Engine.IO handshake (a ``/socket.io/`` request with no
``sid``) and ends when the socket's first subscribe is answered, when its
connect is refused, when it disconnects, or ``STREAM_JOIN_TIMEOUT`` seconds
after it began, whichever comes first.  A handshake over the limit is answered
at once ``429 Too Many Requests`` with ``Retry-After``: socket.io-client takes
any failed handshake as a reason to retry after its backoff (the page's is
jittered), so the clients that are turned away come back spread out, and
those let in are served at full speed.

The join travels with the handshake's WSGI environ, which python-socketio
hands to the namespace's connect handler (``JOIN_KEY``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict

from .. import metrics

log = logging.getLogger(__name__)

JOIN_KEY = "pulseboard.stream_join"
# A refused client is told to wait this many seconds, drawn at random, so that
# clients honouring it do not come back in step.
RETRY_AFTER_SECONDS = (1, 5)


class Join:
    """One socket's join: ``done()`` frees its place (more than once is harmless)."""

    __slots__ = ("__weakref__", "gate")

    def __init__(self, gate: JoinGate):
        self.gate = gate

    def done(self) -> None:
        self.gate.release(self)


class JoinGate:
    def __init__(self, limit: int, timeout: float):
        self.limit = limit
        self.timeout = timeout
        self._joining: OrderedDict[Join, float] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def admit(self) -> Join | None:
        """A new join, or None when ``limit`` are already under way."""
        now = time.monotonic()
        with self._lock:
            while self._joining:
                oldest, started = next(iter(self._joining.items()))
                if now - started < self.timeout:
                    break
                del self._joining[oldest]
            if len(self._joining) >= self.limit:
                return None
            join = Join(self)
            self._joining[join] = now
            return join

    def release(self, join: Join) -> None:
        with self._lock:
            started = self._joining.pop(join, None)
        if started is not None:
            metrics.stream_joined(time.monotonic() - started)

    def __len__(self) -> int:
        return len(self._joining)


def join_of(environ: dict) -> Join | None:
    return environ.get(JOIN_KEY)


def finish_join(environ: dict) -> None:
    """The socket opened by this environ's handshake is done joining (or gone)."""
    join = environ.pop(JOIN_KEY, None)
    if join is not None:
        join.done()


class JoinAdmission:
    """WSGI middleware: a handshake over the gate's limit gets 429 before Engine.IO sees it."""

    def __init__(self, wsgi_app, gate: JoinGate, path: str = "/socket.io/"):
        self.wsgi_app = wsgi_app
        self.gate = gate
        self.path = path

    def __call__(self, environ, start_response):
        if not environ.get("PATH_INFO", "").startswith(self.path) or _has_sid(environ):
            return self.wsgi_app(environ, start_response)
        join = self.gate.admit()
        if join is None:
            metrics.stream_join_refused()
            wait = random.randint(*RETRY_AFTER_SECONDS)  # noqa: S311 - spreading, not secrecy
            body = f"too many connections are opening at once; retry in {wait} s\n".encode()
            start_response(
                "429 Too Many Requests",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Retry-After", str(wait)),
                    ("Cache-Control", "no-store"),
                ],
            )
            return [body]
        environ[JOIN_KEY] = join

        def watch(status: str, headers, exc_info=None):
            # A handshake Engine.IO refused (bad origin, bad transport) opened nothing.
            if not status.startswith(("200", "101")):
                join.done()
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, watch)


def _has_sid(environ: dict) -> bool:
    query = environ.get("QUERY_STRING", "")
    return query.startswith("sid=") or "&sid=" in query
