"""Publishing events to the bus: one envelope or a batch, confirmed by the broker.

With RabbitMQ every publish waits for the broker's confirm, so a call that
returns means the event is safely queued; a lost connection is retried a
bounded number of times, then ``PublishError`` is raised and nothing is
half-sent in silence.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from kombu import Connection
from kombu import Producer as KombuProducer

from . import bus
from .envelope import Envelope, new_envelope
from .topology import Topology

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """The broker did not take the event(s) after the allowed retries."""


class Producer:
    def __init__(
        self,
        broker_url: str,
        topology: Topology,
        max_retries: int = 5,
        limits: dict[str, int] | None = None,
    ):
        self.broker_url = broker_url
        self.topology = topology
        self.max_retries = max_retries
        # The consumer's own limits (EVENT_MAX_BYTES, EVENT_MAX_DEPTH): an event that
        # passes here is never dead-lettered for its size or depth.
        self.limits = limits or {}
        self._connection: Connection | None = None
        self._producer: KombuProducer | None = None
        # One channel is not safe to share between threads; publishing is serialised.
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config) -> Producer:
        return cls(
            config["BROKER_URL"],
            Topology.from_config(config),
            max_retries=config["PUBLISH_MAX_RETRIES"],
            limits={"max_bytes": config["EVENT_MAX_BYTES"], "max_depth": config["EVENT_MAX_DEPTH"]},
        )

    def publish(
        self, topic: str, type: str, payload: dict[str, Any], key: str | None = None
    ) -> str:
        """Publish one new event; return its id."""
        envelope = new_envelope(topic, type, payload, key, **self.limits)
        self.publish_envelopes([envelope])
        return envelope.id

    def publish_envelopes(self, envelopes: Iterable[Envelope]) -> list[str]:
        """Publish already-validated envelopes in order; return their ids."""
        ids = []
        with self._lock:
            producer = self._ensure_producer()
            for envelope in envelopes:
                self._publish_one(producer, envelope)
                ids.append(envelope.id)
        return ids

    def _publish_one(self, producer: KombuProducer, envelope: Envelope) -> None:
        try:
            producer.publish(
                envelope.to_json(),
                exchange=self.topology.exchange,
                routing_key=envelope.topic,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,  # persistent: survives a broker restart
                message_id=envelope.id,
                retry=True,
                retry_policy={
                    "max_retries": self.max_retries,
                    "interval_start": 0.2,
                    "interval_step": 0.5,
                    "interval_max": 2,
                },
            )
        except Exception as error:
            self._reset()
            raise PublishError(f"could not publish event {envelope.id}: {error}") from error

    def _ensure_producer(self) -> KombuProducer:
        if self._producer is None:
            connection = bus.connect(
                self.broker_url,
                transport_options={"confirm_publish": True},
                connect_timeout=5,
            )
            try:
                connection.ensure_connection(max_retries=self.max_retries)
                channel = connection.default_channel
                self.topology.declare(channel)
            except Exception as error:
                connection.release()
                raise PublishError(
                    f"broker unreachable at {connection.as_uri()}: {error}"
                ) from error
            self._connection = connection
            self._producer = KombuProducer(connection)
        return self._producer

    def _reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # the connection is already broken; nothing to keep
                log.debug("error while dropping broken broker connection", exc_info=True)
        self._connection = None
        self._producer = None

    def close(self) -> None:
        with self._lock:
            self._reset()


def shared_producer(app) -> Producer:
    """This process's producer for ``app`` (publishing is serialised inside it)."""
    if "pulseboard.producer" not in app.extensions:
        app.extensions["pulseboard.producer"] = Producer.from_config(app.config)
    return app.extensions["pulseboard.producer"]
