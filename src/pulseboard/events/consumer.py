"""The consumer service: queue → validate → event log → Socket.IO → acknowledge.

Messages are taken in batches: the loop waits for one, then collects whatever
else is already waiting (up to ``batch_size``, for at most ``batch_wait``
seconds) and handles them together, so an idle stream is forwarded at once and
a busy one costs one transaction and one emit per topic per batch.

A message is acknowledged only after its event is stored and emitted (or, when
invalid, copied to the dead-letter queue with the reason).  When the broker or
the database fails, the connection is dropped without acknowledging, RabbitMQ
redelivers, and the event log's unique id keeps the redelivery from being
stored twice.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field

from kombu import Connection, Consumer, Producer
from kombu.message import Message
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..extensions import db
from . import store
from .emitter import Emitter
from .envelope import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, InvalidEnvelope, parse
from .socketio_queue import EmitFailed
from .topology import REASON_HEADER, Topology

log = logging.getLogger("pulseboard.consumer")

# How long one wait for the first message of a batch lasts; also how quickly
# a stop request is noticed when the queue is idle.
IDLE_POLL = 1.0
# Between messages of one batch: "is another one already here?"
NEXT_POLL = 0.002


@dataclass
class Backoff:
    """Exponential delays between reconnection attempts, reset once connected."""

    first: float = 0.5
    longest: float = 30.0
    current: float = field(default=0.0, init=False)

    def next(self) -> float:
        self.current = min(self.longest, self.current * 2 if self.current else self.first)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


class EventConsumer:
    def __init__(
        self,
        app,
        emitter: Emitter,
        *,
        prefetch: int = 1000,
        batch_size: int = 500,
        batch_wait: float = 0.05,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        prune_interval: float = 300.0,
    ):
        config = app.config
        self.app = app
        self.emitter = emitter
        self.broker_url = config["BROKER_URL"]
        self.topology = Topology.from_config(config)
        self.prefetch = prefetch
        self.batch_size = min(batch_size, prefetch)
        self.batch_wait = batch_wait
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.prune_interval = prune_interval
        self.retention = (config["EVENT_RETENTION"], config["EVENT_RETENTION_COUNT"])
        self.connection_errors = (OSError, *Connection(self.broker_url).connection_errors)
        self.batch: list[Message] = []
        self.stopping = threading.Event()
        self.stats = {"stored": 0, "dead_lettered": 0, "batches": 0}
        self._next_prune = 0.0

    @classmethod
    def from_app(cls, app, emitter: Emitter) -> EventConsumer:
        config = app.config
        return cls(
            app,
            emitter,
            prefetch=config["CONSUMER_PREFETCH"],
            batch_size=config["CONSUMER_BATCH_SIZE"],
            batch_wait=config["CONSUMER_BATCH_WAIT_MS"] / 1000,
            max_bytes=config["EVENT_MAX_BYTES"],
            max_depth=config["EVENT_MAX_DEPTH"],
        )

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return."""
        self.stopping.set()

    def run(self) -> None:
        """Consume until ``stop()``; reconnect with backoff after any failure."""
        log.info("consumer starting: queue %s on %s", self.topology.queue.name, self._where())
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                self._run_connected(backoff)
            except self.connection_errors as error:
                log.warning("broker connection lost: %s", _describe(error))
            except EmitFailed as error:
                log.warning("emit failed, events will be redelivered: %s", _describe(error))
            except SQLAlchemyError as error:
                log.warning("database error, events will be redelivered: %s", _describe(error))
                self._reset_database_session()
            except Exception:
                # A bug must not take the service down for good: log it whole, back off, retry.
                log.exception("unexpected error; events will be redelivered")
                self._reset_database_session()
            self.batch.clear()  # unacknowledged: the broker hands them out again
            if not self.stopping.is_set():
                delay = backoff.next()
                log.info("reconnecting in %.1fs", delay)
                self.stopping.wait(delay)
        log.info(
            "consumer stopped: %d stored, %d dead-lettered in %d batches",
            self.stats["stored"],
            self.stats["dead_lettered"],
            self.stats["batches"],
        )

    def _where(self) -> str:
        if self.broker_url.startswith("memory://"):
            return "the in-process bus"
        return Connection(self.broker_url).as_uri()  # password masked

    def _run_connected(self, backoff: Backoff) -> None:
        transport_options = {"confirm_publish": True}
        if self.broker_url.startswith("memory://"):
            # The in-process bus polls; kombu's default second would be felt in the UI.
            transport_options = {"polling_interval": 0.02}
        with Connection(
            self.broker_url, heartbeat=30, connect_timeout=5, transport_options=transport_options
        ) as connection:
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            self.topology.declare(channel)
            dead_letters = Producer(connection.channel())
            consumer = Consumer(
                channel,
                queues=[self.topology.queue],
                on_message=self.batch.append,
                prefetch_count=self.prefetch,
            )
            with consumer:
                log.info("connected; consuming with prefetch %d", self.prefetch)
                backoff.reset()
                self._consume(connection, dead_letters)

    def _consume(self, connection: Connection, dead_letters: Producer) -> None:
        multiple_ack = connection.transport.driver_type == "amqp"
        while not self.stopping.is_set():
            # Deliveries can arrive while a dead letter waits for its publisher confirm:
            # those are already in hand and must not wait for the next message.
            if not self.batch and not self._wait(connection, IDLE_POLL):
                connection.heartbeat_check()
                self._prune_if_due()
                continue
            deadline = time.monotonic() + self.batch_wait
            while len(self.batch) < self.batch_size and time.monotonic() < deadline:
                if not self._wait(connection, NEXT_POLL):
                    break
            self._handle_batch(dead_letters, multiple_ack)
        if self.batch:
            self._handle_batch(dead_letters, multiple_ack)
        log.info("stop requested; batch in hand handled and acknowledged")

    @staticmethod
    def _wait(connection: Connection, timeout: float) -> bool:
        try:
            connection.drain_events(timeout=timeout)
        except TimeoutError:
            return False
        except socket.timeout:  # noqa: UP041 - kombu's transports may raise either
            return False
        return True

    def _handle_batch(self, dead_letters: Producer, multiple_ack: bool) -> None:
        # Copy, then empty in place: the kombu consumer appends to this very list.
        messages = self.batch[:]
        self.batch.clear()
        if not messages:  # the wait returned on a frame that was not a delivery
            return
        valid = []
        for message in messages:
            try:
                valid.append(parse(message.body, self.max_bytes, self.max_depth))
            except InvalidEnvelope as error:
                self._dead_letter(dead_letters, message, str(error))
        if valid:
            with self.app.app_context():
                stored = store.store_batch(db.session, valid)
                db.session.commit()
            metrics.events_stored(stored)
            self.emitter.emit(stored)
            metrics.events_emitted(len(stored))
            self.stats["stored"] += len(stored)
        self.stats["batches"] += 1
        if multiple_ack:
            messages[-1].ack(multiple=True)
        else:
            for message in messages:
                message.ack()
        metrics.batch_consumed(len(messages))

    def _dead_letter(self, producer: Producer, message: Message, reason: str) -> None:
        log.warning("dead-lettering message %s: %s", _message_label(message), reason)
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = reason
        producer.publish(
            message.body,
            exchange=self.topology.dead_letter_exchange,
            routing_key=message.delivery_info.get("routing_key", ""),
            headers=headers,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary",
            delivery_mode=2,
        )
        self.stats["dead_lettered"] += 1
        metrics.dead_lettered(reason)

    def _prune_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + self.prune_interval
        max_age, max_count = self.retention
        with self.app.app_context():
            deleted = store.prune(db.session, max_age, max_count)
        if deleted:
            log.info("pruned %d events past retention", deleted)

    def _reset_database_session(self) -> None:
        with self.app.app_context():
            db.session.rollback()
            db.session.remove()


def _message_label(message: Message) -> str:
    properties = message.properties or {}
    return str(properties.get("message_id") or message.delivery_tag)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]
