"""Prometheus metrics: what the web instances and the consumer count.

Every name starts with ``pulseboard_``; docs/OPERATIONS.md lists them all.
The metrics are made on first use, not at import, because where their values
live depends on the process: a web instance with ``PROMETHEUS_MULTIPROC_DIR``
writes them to files in that folder, so that one scrape sums every instance on
the host; the consumer (scraped on its own port) and a web instance without
that folder keep them in memory.

The functions below are what the rest of the code calls, one line each.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime

log = logging.getLogger(__name__)

# Seconds; from a fast page to a slow replay read.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOIN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Seconds from an event's timestamp to its storing: milliseconds when healthy,
# minutes when the consumer was down and catches up.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# Seconds from an event's timestamp to the end of the round that sent it to a web
# instance's sockets: tens of milliseconds when healthy, finer at the low end.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Dead-letter reasons as labels: the consumer's message starts with one of
# these; the full text (with field names and sizes) stays in the header and log.
REASON_LABELS = (
    ("message is not UTF-8", "not_utf8"),
    ("message is not JSON", "not_json"),
    ("message must be a JSON object", "not_object"),
    ("unknown field", "unknown_field"),
    ("missing field", "missing_field"),
)
_TOO_LARGE = re.compile(r"^message is \d+ bytes")
_METHOD = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")


class _Storage:
    """Where this process keeps its metrics; fixed once the first metric exists."""

    multiprocess_dir: str | None = None


_storage = _Storage()
_metrics = None
# Two threads' first uses (a request and a background task) must not both register.
_making = threading.Lock()


def configure(multiprocess_dir: str | None) -> None:
    """Keep values in ``multiprocess_dir`` (a web instance) or in memory (None)."""
    if _metrics is not None:
        if multiprocess_dir != _storage.multiprocess_dir:
            log.warning(
                "metrics already kept %s in this process; PROMETHEUS_MULTIPROC_DIR change ignored",
                "in files" if _storage.multiprocess_dir else "in memory",
            )
        return
    _storage.multiprocess_dir = multiprocess_dir


def multiprocess_dir() -> str | None:
    return _storage.multiprocess_dir


class Metrics:
    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram

        # HTTP (web instances; Socket.IO traffic never reaches Flask and is not counted here)
        self.http_requests = Counter(
            "pulseboard_http_requests",
            "HTTP requests answered, by Flask endpoint, method and status",
            ["endpoint", "method", "status"],
        )
        self.http_duration = Histogram(
            "pulseboard_http_request_duration_seconds",
            "Time to answer an HTTP request, by Flask endpoint",
            ["endpoint"],
            buckets=HTTP_BUCKETS,
        )
        self.rate_limited = Counter(
            "pulseboard_rate_limited",
            "Requests refused for going too fast: scope http (429) or socket",
            ["scope", "endpoint"],
        )
        self.logins = Counter(
            "pulseboard_logins",
            "Sign-in attempts by method (password or the OAuth provider) and result",
            ["method", "result"],
        )
        # Live sockets (web instances); live* modes drop the values of exited processes.
        self.sockets = Gauge(
            "pulseboard_sockets_connected",
            "Connected /stream sockets by transport",
            ["transport"],
            multiprocess_mode="livesum",
        )
        self.instance_sockets = Gauge(
            "pulseboard_instance_sockets_connected",
            "Connected /stream sockets of one web instance (host:port)",
            ["web_instance"],
            multiprocess_mode="livesum",
        )
        self.instance_users = Gauge(
            "pulseboard_instance_users_connected",
            "Distinct users with a connected socket on one web instance (host:port)",
            ["web_instance"],
            multiprocess_mode="livesum",
        )
        self.joins_refused = Counter(
            "pulseboard_stream_joins_refused",
            "/stream connects refused (retry: true) because too many sockets were joining at once",
        )
        self.replay_pages = Counter(
            "pulseboard_stream_replay_pages",
            "Replay pages a socket took, by source: log (read for it) or shared (a read"
            " made for another socket asking for the same page since it joined)",
            ["source"],
        )
        self.handshakes_shed = Counter(
            "pulseboard_stream_handshakes_shed",
            "Engine.IO handshakes answered 429 before any session was made, by reason:"
            " joining (the join limit is reached) or lag (the event loop runs late)",
            ["reason"],
        )
        self.loop_lag = Gauge(
            "pulseboard_event_loop_lag_seconds",
            "How long ready work waits for its turn on a web instance's event loop (least of"
            " the last three probes; new handshakes are shed above STREAM_SHED_LAG_MS)",
            ["web_instance"],
            multiprocess_mode="livemax",
        )
        self.join_seconds = Histogram(
            "pulseboard_stream_join_seconds",
            "From a socket's connect to its first subscribe answered (or its refusal)",
            buckets=JOIN_BUCKETS,
        )
        self.upgrades = Counter(
            "pulseboard_socket_upgrades",
            "Sockets that moved from long-polling to WebSocket after connecting",
        )
        self.subscriptions = Gauge(
            "pulseboard_subscriptions",
            "Topic subscriptions of connected sockets; user.<id> topics count as user.*",
            ["topic"],
            multiprocess_mode="livesum",
        )
        self.replays = Counter(
            "pulseboard_replay_requests", "Subscribes that asked for events since a seq"
        )
        self.replayed = Counter("pulseboard_replayed_events", "Events sent by replays")
        self.replay_gaps = Counter(
            "pulseboard_replay_gaps", "Replays that could not go back as far as asked"
        )
        self.delivery_age = Histogram(
            "pulseboard_stream_delivery_age_seconds",
            "From a live event's timestamp to the end of the round that sent it to a web"
            " instance's sockets (once per event and instance, however many sockets take it)",
            buckets=DELIVERY_BUCKETS,
        )
        # Consumer
        self.consumed = Counter(
            "pulseboard_events_consumed", "Messages taken off the queue and acknowledged"
        )
        self.stored = Counter(
            "pulseboard_events_stored", "Events written to (or found already in) the event log"
        )
        self.emitted = Counter("pulseboard_events_emitted", "Events emitted to Socket.IO")
        self.dead_lettered = Counter(
            "pulseboard_events_dead_lettered",
            "Messages refused and copied to the dead-letter queue, by reason",
            ["reason"],
        )
        self.batch_size = Histogram(
            "pulseboard_consumer_batch_size",
            "Messages handled together in one consumer batch",
            buckets=BATCH_BUCKETS,
        )
        self.lag = Histogram(
            "pulseboard_consumer_lag_seconds",
            "Time from an event's timestamp to its storing in the event log",
            buckets=LAG_BUCKETS,
        )
        self.last_batch = Gauge(
            "pulseboard_consumer_last_batch_timestamp_seconds",
            "Unix time of the consumer's latest batch",
            multiprocess_mode="max",
        )


def get() -> Metrics:
    """This process's metrics, made on first use in the storage chosen by ``configure``."""
    global _metrics
    if _metrics is not None:
        return _metrics
    with _making:
        if _metrics is None:
            _metrics = _made()
    return _metrics


def _made() -> Metrics:
    from prometheus_client import values

    # prometheus_client picks its storage when imported; choose it explicitly
    # here, so a PROMETHEUS_MULTIPROC_DIR read from .env counts as well.
    if _storage.multiprocess_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _storage.multiprocess_dir
        if values.ValueClass is values.MutexValue:
            values.ValueClass = values.MultiProcessValue()
    else:
        values.ValueClass = values.MutexValue
    return Metrics()


# --- Recording, one call per place in the code --------------------------------


def http_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    m = get()
    m.http_requests.labels(endpoint, method, str(status)).inc()
    m.http_duration.labels(endpoint).observe(seconds)
    if status == 429:
        m.rate_limited.labels("http", endpoint).inc()


def socket_rate_limited(namespace: str) -> None:
    get().rate_limited.labels("socket", namespace).inc()


def stream_join_refused() -> None:
    get().joins_refused.inc()


def replay_page(source: str) -> None:
    get().replay_pages.labels(source).inc()


def stream_handshake_shed(reason: str) -> None:
    get().handshakes_shed.labels(reason).inc()


def event_loop_lag(instance: str, seconds: float) -> None:
    get().loop_lag.labels(instance).set(seconds)


def stream_joined(seconds: float) -> None:
    get().join_seconds.observe(seconds)


def login(method: str, succeeded: bool) -> None:
    label = method if _METHOD.match(method) else "other"
    get().logins.labels(label, "success" if succeeded else "failure").inc()


def replay(since: int, replayed: int, gap: bool) -> None:
    if not since:
        return
    m = get()
    m.replays.inc()
    m.replayed.inc(replayed)
    if gap:
        m.replay_gaps.inc()


def round_delivered(events: Sequence[dict]) -> None:
    """``events``: a round's events, as sockets get them; their age is measured now."""
    m = get()
    now = time.time()
    for event in events:
        sent = datetime.fromisoformat(event["timestamp"]).timestamp()
        m.delivery_age.observe(max(0.0, now - sent))


def batch_consumed(size: int) -> None:
    m = get()
    m.consumed.inc(size)
    m.batch_size.observe(size)
    m.last_batch.set(time.time())


def events_stored(stored: Sequence) -> None:
    """``stored``: the batch's StoredEvents; their lag is measured now."""
    m = get()
    m.stored.inc(len(stored))
    now = time.time()
    for event in stored:
        m.lag.observe(max(0.0, now - event.envelope.timestamp.timestamp()))


def events_emitted(count: int) -> None:
    get().emitted.inc(count)


def dead_lettered(reason: str) -> None:
    get().dead_lettered.labels(reason_label(reason)).inc()


def reason_label(reason: str) -> str:
    """A dead-letter reason reduced to a few fixed words, so labels stay few."""
    if _TOO_LARGE.match(reason):
        return "too_large"
    for prefix, label in REASON_LABELS:
        if reason.startswith(prefix):
            return label
    return "invalid_field"


def serve_consumer(port: int) -> None:
    """The consumer's own ``/metrics`` on 127.0.0.1:``port``; 0 serves nothing.

    The consumer is one process scraped on its own port, so its metrics stay in
    memory even where the web instances share PROMETHEUS_MULTIPROC_DIR: written
    there too, they would be counted twice.
    """
    configure(None)
    get()
    if not port:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as error:
        # Events matter more than their counts: consume anyway, and say so loudly.
        log.error("consumer metrics not served on 127.0.0.1:%d: %s", port, error)
        return
    log.info("consumer metrics on http://127.0.0.1:%d/metrics", port)
