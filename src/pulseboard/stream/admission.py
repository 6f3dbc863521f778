"""How many sockets may be joining at once: a reconnect storm is shed, not queued.

When an instance restarts, every client it held comes back within seconds.
Each joining socket costs a session read, a subscribe and its replay;
thousands at once share one event loop and one database pool, every one of
them gets slower, the pool's wait runs out and joins fail after seconds with
nothing to show for them (measured: ``bench/storm.py``).

So a process lets at most ``STREAM_JOIN_CONCURRENCY`` sockets join at a time.
A join starts when a socket asks to connect to ``/stream`` (before its
session is read) and ends when its first subscribe is answered, when its
connect is refused, when it disconnects, or ``STREAM_JOIN_TIMEOUT`` seconds
after it began, whichever comes first.  A connect over the limit is refused at
once with ``{"retry": true}``; the page retries such a refusal after its
jittered backoff, so the clients turned away come back spread out and those
let in are served at full speed.

The Engine.IO handshake itself is not counted: it costs little, and an
anonymous client that handshakes and goes quiet must not hold a place (a
flood of those would lock every real user out).

The join travels in the handshake's WSGI environ, which python-socketio hands
to every handler of the connection (``JOIN_KEY``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from .. import metrics

log = logging.getLogger(__name__)

JOIN_KEY = "pulseboard.stream_join"
# What a client turned away is told (with data {"retry": true}).
TOO_MANY_JOINING = "too many connections are joining; retry shortly"


class Join:
    """One socket's join: ``done()`` frees its place (more than once is harmless)."""

    __slots__ = ("gate",)

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


def begin_join(gate: JoinGate, environ: dict) -> bool:
    """Take a place for the socket of this environ; False when the gate is full."""
    if JOIN_KEY in environ:  # a connect retried on the same connection still holds one
        return True
    join = gate.admit()
    if join is None:
        metrics.stream_join_refused()
        return False
    environ[JOIN_KEY] = join
    return True


def finish_join(environ: dict) -> None:
    """The socket opened by this environ's handshake is done joining (or gone)."""
    join = environ.pop(JOIN_KEY, None)
    if join is not None:
        join.done()
