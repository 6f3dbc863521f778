"""Helpers for ingest attack tests: tokens, raw posts, and the real consumer in a thread."""

from __future__ import annotations

import contextlib
import json
import threading

from pulseboard import metrics
from pulseboard.api.tokens import issue_token
from pulseboard.events.consumer import EventConsumer
from pulseboard.events.emitter import Emitter
from pulseboard.events.topology import Topology
from pulseboard.extensions import db

from ..pipeline import drain_queue


def token_for(app, *patterns: str) -> str:
    with app.app_context():
        _, clear = issue_token(db.session, "attack tests", list(patterns))
    return clear


def post(app, body, token: str):
    """POST ``body`` (bytes or text as is, anything else as JSON) to the ingest API."""
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return app.test_client().post(
        "/api/v1/events",
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def queued(app) -> list[bytes]:
    """Take every message waiting for the consumer."""
    queue = Topology.from_config(app.config).queue
    return [m.body for m in drain_queue(app.config["BROKER_URL"], queue)]


class RunningConsumer:
    """The product's consumer on its own thread; remembers what it emitted."""

    def __init__(self, app):
        # Made on first use, which is not thread-safe: make them before a second thread runs.
        metrics.get()
        self.emitted: list[dict] = []
        self.consumer = EventConsumer.from_app(app, Emitter(self._record))
        self.thread = threading.Thread(target=self.consumer.run, daemon=True)

    def _record(self, event, batch, namespace, to):
        self.emitted.extend(batch)

    def emitted_keys(self, since: int = 0) -> set[tuple[str, str]]:
        """(topic, id) of what was emitted after the first ``since`` events."""
        return {(event["topic"], event["id"]) for event in self.emitted[since:]}

    @property
    def dead_lettered(self) -> int:
        return self.consumer.stats["dead_lettered"]


@contextlib.contextmanager
def running_consumer(app):
    running = RunningConsumer(app)
    running.thread.start()
    try:
        yield running
    finally:
        running.consumer.stop()
        running.thread.join(10)
