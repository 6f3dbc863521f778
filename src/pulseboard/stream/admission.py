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

The Engine.IO handshake itself is not counted: an anonymous client that
handshakes and goes quiet must not hold a place (a flood of those would lock
every real user out).  But while the gate is full, or while the event loop
runs late, a new handshake is refused before Engine.IO makes a session of it
(``HandshakeShedding``): 429 with ``Retry-After``, which socket.io-client
retries after its jittered backoff.  Measured with 5,000 clients coming back at
once, the handshakes, connects and polls of the clients waiting to retry
filled the worker until a health probe went unanswered for minutes; a refused
handshake costs one short request instead of four, and nothing is kept.

The join travels in the handshake's WSGI environ, which python-socketio hands
to every handler of the connection (``JOIN_KEY``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque

from .. import metrics
from ..metrics.sockets import gauges

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
        with self._lock:
            if self._full():
                return None
            join = Join(self)
            self._joining[join] = time.monotonic()
            return join

    def is_full(self) -> bool:
        with self._lock:
            return self._full()

    def _full(self) -> bool:
        """Whether ``limit`` joins are under way, once those past their time are let go."""
        now = time.monotonic()
        while self._joining:
            oldest, started = next(iter(self._joining.items()))
            if now - started < self.timeout:
                break
            del self._joining[oldest]
        return len(self._joining) >= self.limit

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


class LoopLag:
    """How long work that is ready waits for its turn on this process's event loop.

    Every ``interval`` seconds a task yields (``sleep(0)``) and times how long the
    loop takes to come back to it: the queue of ready work ahead of it.  (A timer
    would not show it: the loop fires timers on time while what requests have made
    ready waits for seconds, as a reconnect storm showed.)  The figure is the least
    of the last ``window`` turns: a loop that is busy keeps every turn late, while
    one long pause (a password hash on sign-in) makes only one late."""

    def __init__(self, interval: float = 0.05, window: int = 3):
        self.interval = interval
        self.recent: deque[float] = deque([0.0], maxlen=window)
        self.seconds = 0.0
        self.started = False

    def start(self, server) -> None:
        if not self.started:
            self.started = True
            server.start_background_task(self._run, server)

    def _run(self, server) -> None:
        published = 0.0
        while True:
            server.sleep(self.interval)
            began = time.monotonic()
            server.sleep(0)
            self.observe(time.monotonic() - began)
            if began - published >= 1.0:
                published = began
                metrics.event_loop_lag(gauges.instance, self.seconds)

    def observe(self, late: float) -> None:
        self.recent.append(max(0.0, late))
        self.seconds = min(self.recent)


class HandshakeShedding:
    """Refuses new Engine.IO handshakes while the join gate is full or the loop is late.

    Only a handshake (a request to ``path`` without ``sid``) is refused; the
    traffic of sockets that exist goes on.  The refusal is made before anything is
    read or stored, so shedding costs almost nothing: that is the point."""

    def __init__(
        self,
        wsgi_app,
        gate: JoinGate,
        lag: LoopLag,
        max_lag: float,
        server,
        path: str = "/socket.io/",
    ):
        self.wsgi_app = wsgi_app
        self.gate = gate
        self.lag = lag
        self.max_lag = max_lag  # seconds; 0: never shed on lag
        self.server = server
        self.path = path

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(self.path):
            if self.max_lag:
                self.lag.start(self.server)  # on the first request: the loop exists by then
            reason = self.shed(environ.get("QUERY_STRING", ""))
            if reason is not None:
                metrics.stream_handshake_shed(reason)
                log.info(
                    "new connection refused (%s: %d joining, loop %.0f ms late)",
                    reason,
                    len(self.gate),
                    self.lag.seconds * 1000,
                )
                body = (TOO_MANY_JOINING + "\n").encode()
                start_response(
                    "429 Too Many Requests",
                    [
                        ("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(body))),
                        ("Retry-After", "2"),
                        ("Cache-Control", "no-store"),
                    ],
                )
                return [body]
        return self.wsgi_app(environ, start_response)

    def shed(self, query: str) -> str | None:
        """Why this request is refused ("joining" or "lag"), or None to let it through."""
        if any(part.startswith("sid=") for part in query.split("&")):
            return None  # a socket that exists
        if self.gate.is_full():
            return "joining"
        if self.max_lag and self.lag.seconds > self.max_lag:
            return "lag"
        return None
