"""Running the consumer: as its own service, or embedded in the web process.

As a service (``flask events consume``, ``pulseboard-consumer`` from
``pulseboard.scripts``, the systemd unit) it emits through Socket.IO's message
queue and stops cleanly on SIGTERM or SIGINT.  Embedded (``BROKER_URL`` is
``filesystem://`` or ``memory://``, ``make dev``) it runs as a background task
of the web process and emits into its Socket.IO server.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys

from .. import metrics
from ..extensions import socketio
from ..logs import make_handler
from . import bus
from .consumer import EventConsumer
from .emitter import Emitter

log = logging.getLogger("pulseboard.consumer")


def is_embedded(app) -> bool:
    return bus.is_embedded(app.config["BROKER_URL"])


def run_service(app) -> None:
    """Consume until SIGTERM/SIGINT; the batch in hand is finished and acknowledged."""
    if is_embedded(app):
        raise SystemExit(
            f"BROKER_URL is {app.config['BROKER_URL']}: the consumer runs inside the web process. "
            "Set BROKER_URL=amqp://… to run it as a service."
        )
    log_to_stdout(app.config["LOG_JSON"])
    metrics.serve_consumer(app.config["CONSUMER_METRICS_PORT"])
    emitter = Emitter.over_message_queue(app.config["BROKER_URL"], app.config["SOCKETIO_CHANNEL"])
    consumer = EventConsumer.from_app(app, emitter)

    def request_stop(signum, _frame):
        log.info("received %s; finishing the batch in hand", signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # What start-up made lives as long as the service: frozen out of the collector's
    # reach, it is no longer walked by every full collection, each of which held
    # events back about 100 ms (as gunicorn.conf.py does for the web worker).
    gc.freeze()
    consumer.run()


def log_to_stdout(json_lines: bool) -> None:
    """A service logs its lifecycle to stdout, one line each (journald under systemd)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "pulseboard", False):
            root.removeHandler(handler)
    handler = make_handler(sys.stdout, json_lines)
    handler.pulseboard = True
    root.addHandler(handler)


def start_embedded(app) -> EventConsumer:
    """Start the consumer as a background task of this (gevent) web process."""
    consumer = EventConsumer.from_app(app, Emitter.in_process(socketio))
    socketio.start_background_task(consumer.run)
    return consumer
