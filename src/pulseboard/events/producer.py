"""Publishing events to the bus: one envelope or a batch, confirmed by the broker.

With RabbitMQ a batch is pipelined: up to ``PUBLISH_CONFIRM_WINDOW`` publishes
are in flight at once, each persistent, and the call returns once the broker
has confirmed every one, so a call that returns means every event is safely
queued.  A window of 1 waits for each confirm before the next publish.  A lost
connection is retried a bounded number of times (the unconfirmed events only,
with the same ids: the log keeps an event once per topic and id); a refusal
(``basic.nack``) is not, and the connection is dropped so that a call sending
the refused events again starts on a fresh channel.  Then ``PublishError``
names exactly the events the broker did not confirm; nothing is half-sent in
silence.  The embedded buses have no confirms: there an event is taken once
its publish returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kombu import Connection

from . import bus
from .confirms import ConfirmTracker, PublisherTransport, check_confirm_callbacks
from .envelope import Envelope, new_envelope
from .topology import Topology

log = logging.getLogger(__name__)

# Seconds without any answer from the broker before the publishes still waiting
# count as lost: a broker under a memory or disk alarm stops reading, and a caller
# should hear about it rather than wait for ever.
CONFIRM_TIMEOUT = 30.0
# Pauses between attempts after a lost connection: 0.2 s, then 0.5 s more each time, at most 2 s.
RETRY_FIRST, RETRY_STEP, RETRY_LONGEST = 0.2, 0.5, 2.0
# Ids named in a PublishError's message; all of them are in its ``unconfirmed``.
IDS_SHOWN = 10


class PublishError(RuntimeError):
    """The broker did not confirm some events after the allowed retries.

    ``unconfirmed`` holds their ids in the order they were given; every other
    event of the call was confirmed.  Send the unconfirmed ones again with the
    same ids: one that reached the broker after all is stored once."""

    def __init__(self, message: str, unconfirmed: Iterable[str] = ()):
        super().__init__(message)
        self.unconfirmed = list(unconfirmed)


@dataclass
class Attempt:
    """One pass over a batch on one connection: positions in the batch whose fate is
    unknown (the connection failed first), positions the broker refused, and why."""

    lost: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    error: Exception | None = None
    recoverable: bool = False  # a lost connection, worth another attempt

    @property
    def reason(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


class Producer:
    def __init__(
        self,
        broker_url: str,
        topology: Topology,
        max_retries: int = 5,
        limits: dict[str, int] | None = None,
        window: int = 1000,
    ):
        self.broker_url = broker_url
        self.topology = topology
        self.max_retries = max_retries
        # The consumer's own limits (EVENT_MAX_BYTES, EVENT_MAX_DEPTH): an event that
        # passes here is never dead-lettered for its size or depth.
        self.limits = limits or {}
        self.window = max(1, window)
        if not bus.is_embedded(broker_url):
            check_confirm_callbacks()  # refuse now, not at the first publish
        self._connection: Connection | None = None
        self._channel = None
        self._confirms: ConfirmTracker | None = None  # None on the embedded buses
        # One channel is not safe to share between threads; publishing is serialised.
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config) -> Producer:
        return cls(
            config["BROKER_URL"],
            Topology.from_config(config),
            max_retries=config["PUBLISH_MAX_RETRIES"],
            limits={"max_bytes": config["EVENT_MAX_BYTES"], "max_depth": config["EVENT_MAX_DEPTH"]},
            window=config["PUBLISH_CONFIRM_WINDOW"],
        )

    def publish(
        self, topic: str, type: str, payload: dict[str, Any], key: str | None = None
    ) -> str:
        """Publish one new event; return its id."""
        envelope = new_envelope(topic, type, payload, key, **self.limits)
        self.publish_envelopes([envelope])
        return envelope.id

    def publish_envelopes(self, envelopes: Iterable[Envelope]) -> list[str]:
        """Publish already-validated envelopes in order; return their ids once every
        one is confirmed, or raise ``PublishError`` naming those that are not."""
        batch = list(envelopes)
        with self._lock:
            attempt = self._publish_once(batch, list(range(len(batch))))
            retries = 0
            while attempt.lost and not attempt.refused and attempt.recoverable:
                if retries == self.max_retries:
                    break
                retries += 1
                log.warning(
                    "publishing %d unconfirmed events again (retry %d of %d) after: %s",
                    len(attempt.lost), retries, self.max_retries, attempt.reason,
                )  # fmt: skip
                time.sleep(min(RETRY_FIRST + RETRY_STEP * (retries - 1), RETRY_LONGEST))
                attempt = self._publish_once(batch, attempt.lost)
        if attempt.refused or attempt.lost:
            raise self._error(batch, attempt) from attempt.error
        return [envelope.id for envelope in batch]

    def _publish_once(self, batch: list[Envelope], positions: list[int]) -> Attempt:
        """Publish ``batch[p]`` for each of ``positions`` on one connection."""
        try:
            channel = self._ensure_channel()
        except PublishError as unreachable:  # its connection attempts are already spent
            return Attempt(lost=positions, error=unreachable, recoverable=False)
        confirms = self._confirms
        exchange = self.topology.exchange.name
        sent = 0
        try:
            for position in positions:
                self._send(channel, exchange, batch[position])
                sent += 1
                if confirms is not None:
                    confirms.sent(position)
                    confirms.wait(self._connection, self.window - 1, CONFIRM_TIMEOUT)
            if confirms is not None:
                confirms.wait(self._connection, 0, CONFIRM_TIMEOUT)
        except Exception as error:
            recoverable = isinstance(
                error, (*self._connection.recoverable_connection_errors, TimeoutError)
            )
            self._reset()
            return Attempt(
                lost=sorted((confirms.waiting if confirms else []) + positions[sent:]),
                refused=sorted(confirms.nacked if confirms else []),
                error=error,
                recoverable=recoverable,
            )
        if confirms is None:
            return Attempt()
        refused, confirms.nacked = sorted(confirms.nacked), []
        if refused:
            # The next publish starts on a fresh channel: RabbitMQ keeps per channel
            # how it reaches a quorum queue, and a channel that reached it while its
            # leader was changing can go on refusing long after the queue is back.
            self._reset()
        return Attempt(refused=refused)

    @staticmethod
    def _send(channel, exchange: str, envelope: Envelope) -> None:
        # The channel's own publish (kombu's Producer adds a quarter to the CPU of each).
        message = channel.prepare_message(
            envelope.to_json(),
            content_type="application/json",
            content_encoding="utf-8",
            properties={
                "delivery_mode": 2,  # persistent: survives a broker restart
                "message_id": envelope.id,
            },
        )
        channel.basic_publish(message, exchange=exchange, routing_key=envelope.topic)

    def _error(self, batch: list[Envelope], attempt: Attempt) -> PublishError:
        ids = [batch[position].id for position in sorted(attempt.refused + attempt.lost)]
        shown = ", ".join(ids[:IDS_SHOWN])
        if len(ids) > IDS_SHOWN:
            shown += f" and {len(ids) - IDS_SHOWN} more"
        if attempt.refused:
            reason = f"the broker refused {len(attempt.refused)} (basic.nack)"
            if attempt.lost:
                reason += f"; {len(attempt.lost)} lost with the connection ({attempt.reason})"
        else:
            reason = attempt.reason
        return PublishError(
            f"{len(ids)} of {len(batch)} events not confirmed ({shown}): {reason}", ids
        )

    def _ensure_channel(self):
        if self._channel is None:
            # No confirm_publish option: a publish does not wait; the tracker collects confirms.
            plain_amqp = all(node.startswith("amqp://") for node in bus.nodes(self.broker_url))
            options = {"transport": PublisherTransport} if plain_amqp else {}
            connection = bus.connect(self.broker_url, connect_timeout=5, **options)
            try:
                connection.ensure_connection(max_retries=self.max_retries)
                channel = connection.default_channel
                self.topology.declare(channel)
                confirms = None if bus.is_embedded(self.broker_url) else ConfirmTracker(channel)
            except Exception as error:
                connection.release()
                raise PublishError(
                    f"broker unreachable at {bus.describe(self.broker_url)}: {error}"
                ) from error
            self._connection = connection
            self._confirms = confirms
            self._channel = channel
        return self._channel

    def _reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # the connection is already broken; nothing to keep
                log.debug("error while dropping broken broker connection", exc_info=True)
        self._connection = None
        self._channel = None
        self._confirms = None

    def close(self) -> None:
        with self._lock:
            self._reset()


def shared_producer(app) -> Producer:
    """This process's producer for ``app`` (publishing is serialised inside it)."""
    if "pulseboard.producer" not in app.extensions:
        app.extensions["pulseboard.producer"] = Producer.from_config(app.config)
    return app.extensions["pulseboard.producer"]
