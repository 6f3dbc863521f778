"""The baseline: a plain Flask-SocketIO app, fed one emit per event through its kombu queue.

    gunicorn -k gevent -w 1 --bind 127.0.0.1:PORT bench.baseline_app:app   # the server
    python bench/baseline_app.py --rate R --seconds S                      # the feed

This is the pattern a Flask-SocketIO tutorial builds: a web process on
Socket.IO's RabbitMQ message queue, and a producer that calls
``socketio.emit`` for each event.  It speaks the same ``/stream`` protocol as
the benchmark clients expect (``subscribe`` joins the topic's room), with no
sign-in, no event log and no filtering, so it is an upper bound for that
pattern rather than a like-for-like product.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime

BROKER = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
CHANNEL = os.environ.get("BASELINE_CHANNEL", "pulseboard-bench-baseline")


def create_app():
    from flask import Flask
    from flask_socketio import SocketIO, join_room

    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.urandom(16).hex()
    socketio = SocketIO(
        app,
        async_mode="gevent",
        message_queue=BROKER,
        channel=CHANNEL,
        cors_allowed_origins="*",
    )

    @app.get("/healthz")
    def healthz():
        return "ok"

    @socketio.on("subscribe", namespace="/stream")
    def subscribe(data):
        topics = list(data.get("topics", []))
        for topic in topics:
            join_room(f"topic:{topic}")
        return {"ok": True, "subscribed": topics, "denied": []}

    return app


def feed(rate: float, seconds: float) -> int:
    """Emit ``rate`` events a second, one ``socketio.emit`` each, for ``seconds``."""
    from flask_socketio import SocketIO

    socketio = SocketIO(message_queue=BROKER, channel=CHANNEL)
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            sent += 1
            event = {
                "id": str(uuid.uuid4()),
                "seq": sent,
                "topic": "market.ticks",
                "type": "tick",
                "key": "ACME",
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
                "payload": {"n": sent, "price": 100 + (sent % 50) / 10},
            }
            socketio.emit("events", [event], to="topic:market.ticks", namespace="/stream")
        time.sleep(0.002)
    return sent


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Feed the baseline server.")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    arguments = parser.parse_args()
    print(feed(arguments.rate, arguments.seconds))
else:
    from gevent import monkey

    if monkey.is_module_patched("socket"):  # imported by gunicorn's gevent worker
        app = create_app()
