"""The consumer service: queue → validate → event log → Socket.IO → acknowledge.

Messages are taken in batches: the loop waits for one, then collects whatever
else is already waiting (up to ``batch_size``, for at most ``batch_wait``
seconds) and handles them together, so an idle stream is forwarded at once and
a busy one costs one transaction and one emit per topic per batch.

A message is acknowledged only after its event is stored and emitted (or, when
invalid, copied to the dead-letter queue with the reason).  When the database
is down, the batch stays in hand, unacknowledged, and its store is retried
with backoff: nothing more is fetched than the prefetch window already holds,
and nothing goes back and forth to the broker meanwhile.  When the broker
fails, the connection is dropped without acknowledging, RabbitMQ redelivers,
and the event log's unique id keeps the redelivery from being stored twice.
An outage is one warning line per attempt, naming what is down and the wait.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from kombu import Connection, Consumer, Producer
from kombu.message import Message

from .. import metrics
from ..extensions import db
from . import bus, store
from .emitter import Emitter
from .envelope import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, InvalidEnvelope, parse
from .outages import Backoff, database_down, describe
from .socketio_queue import EmitFailed
from .topology import REASON_HEADER, Topology

log = logging.getLogger("pulseboard.consumer")

# How long one wait for the first message of a batch lasts; also how quickly
# a stop request is noticed when the queue is idle.
IDLE_POLL = 1.0
# Between messages of one batch: "is another one already here?"
NEXT_POLL = 0.002
# Retention prunes between batches, in this thread: after this long (and the slice
# under way) it goes back to the queue and prunes on at the next idle poll, so a
# backlog of millions of old events never holds up new ones for more than a moment.
PRUNE_TURN_SECONDS = 0.5


class StopWhileDown(Exception):
    """Stop was asked while the database was down: the batch in hand stays unacknowledged."""


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
        backoff: Backoff | None = None,
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
        self.connection_errors = (OSError, *bus.connect(self.broker_url).connection_errors)
        self.batch: list[Message] = []
        self.stopping = threading.Event()
        self.backoff = backoff or Backoff()
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
            backoff=Backoff(
                config["CONSUMER_RETRY_BASE_MS"] / 1000, config["CONSUMER_RETRY_MAX_MS"] / 1000
            ),
        )

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return."""
        self.stopping.set()

    def run(self) -> None:
        """Consume until ``stop()``; reconnect with backoff after any failure."""
        log.info("consumer starting: queue %s on %s", self.topology.queue.name, self._where())
        while not self.stopping.is_set():
            try:
                self._run_connected()
            except StopWhileDown:
                pass
            except self.connection_errors as error:
                self._pause("broker connection lost", error)
            except EmitFailed as error:
                self._pause("Socket.IO message queue unavailable", error)
            except Exception as error:
                if not database_down(error):
                    # A bug must not take the service down for good: log it whole, back off.
                    log.exception("unexpected error; events will be redelivered")
                self._reset_database_session()
                what = "database unavailable" if database_down(error) else "unexpected error"
                self._pause(what, error)
            self.batch.clear()  # unacknowledged: the broker hands them out again
        log.info(
            "consumer stopped: %d stored, %d dead-lettered in %d batches",
            self.stats["stored"],
            self.stats["dead_lettered"],
            self.stats["batches"],
        )

    def _pause(self, what: str, error: BaseException) -> None:
        """One warning line (what is down, the next wait), then the wait, before reconnecting."""
        if self.stopping.is_set():
            return
        delay = self.backoff.next()
        log.warning(
            "%s (%s); reconnecting in %.2fs (attempt %d)",
            what,
            describe(error),
            delay,
            self.backoff.attempt,
        )
        self.stopping.wait(delay)

    def _where(self) -> str:
        return bus.describe(self.broker_url)

    def _run_connected(self) -> None:
        with bus.connect(
            self.broker_url,
            heartbeat=30,
            connect_timeout=5,
            transport_options={"confirm_publish": True},
        ) as connection:
            # A cluster: every node once, then the backoff below before the next round.
            connection.ensure_connection(max_retries=bus.retries_for_each_node(self.broker_url))
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
                log.info(
                    "connected; consuming with prefetch %d from %s",
                    self.prefetch,
                    bus.reached(connection, self.broker_url),  # a cluster's node
                )
                self._consume(connection, dead_letters)

    def _consume(self, connection: Connection, dead_letters: Producer) -> None:
        multiple_ack = connection.transport.driver_type == "amqp"
        while not self.stopping.is_set():
            # Deliveries can arrive while a dead letter waits for its publisher confirm,
            # or while a batch waits for the database: those are already in hand.
            if not self.batch and not self._wait(connection, IDLE_POLL):
                connection.heartbeat_check()
                self.backoff.reset()  # connected and quiet for a while: the broker is fine
                self._prune_if_due()
                continue
            deadline = time.monotonic() + self.batch_wait
            while len(self.batch) < self.batch_size and time.monotonic() < deadline:
                if not self._wait(connection, NEXT_POLL):
                    break
            self._handle_batch(connection, dead_letters, multiple_ack)
        if self.batch:
            self._handle_batch(connection, dead_letters, multiple_ack)
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

    def _take_batch(self) -> list[Message]:
        # Copy, then empty in place: the kombu consumer appends to this very list.
        messages = self.batch[: self.batch_size]
        del self.batch[: len(messages)]
        return messages

    def _handle_batch(self, connection: Connection, dead_letters: Producer, multiple_ack) -> None:
        messages = self._take_batch()
        if not messages:  # the wait returned on a frame that was not a delivery
            return
        valid = []
        for message in messages:
            try:
                valid.append(parse(message.body, self.max_bytes, self.max_depth))
            except InvalidEnvelope as error:
                self._dead_letter(dead_letters, message, str(error))
        if valid:
            stored = self._store_with_retries(connection, valid, len(messages))
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
        self.backoff.reset()
        metrics.batch_consumed(len(messages))

    def _store_with_retries(self, connection: Connection, valid, held: int) -> list:
        """Store ``valid``, retrying with backoff while the database is unreachable.

        The batch stays in hand meanwhile: its messages are neither acknowledged nor
        handed back, so the broker sends nothing again, and the connection is kept
        alive (heartbeats) while the rest of the prefetch window arrives and waits.
        """
        while True:
            try:
                with self.app.app_context():
                    stored = store.store_batch(db.session, valid)
                    db.session.commit()
                return stored
            except Exception as error:
                self._reset_database_session()
                if not database_down(error):
                    raise
                if self.stopping.is_set():
                    log.warning(
                        "stop requested while the database is down; %d messages in hand "
                        "left unacknowledged for redelivery",
                        held + len(self.batch),
                    )
                    raise StopWhileDown from None
                self._hold(connection, held, error)

    def _hold(self, connection: Connection, held: int, error: BaseException) -> None:
        delay = self.backoff.next()
        log.warning(
            "database unavailable (%s); holding %d messages, retrying in %.2fs (attempt %d)",
            describe(error),
            held + len(self.batch),
            delay,
            self.backoff.attempt,
        )
        deadline = time.monotonic() + delay
        while not self.stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            self._wait(connection, min(left, IDLE_POLL))
            connection.heartbeat_check()

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
        deleted = 0
        try:
            with self.app.app_context():
                for count in store.prune_slices(db.session, max_age, max_count):
                    deleted += count
                    if time.monotonic() - now > PRUNE_TURN_SECONDS:
                        self._next_prune = time.monotonic()  # more to do: on when idle again
                        break
        except Exception as error:
            self._reset_database_session()
            if not database_down(error):
                raise
            log.warning(
                "database unavailable (%s); pruning again in %.0fs",
                describe(error),
                self.prune_interval,
            )
            return
        if deleted:
            log.info("pruned %d events past retention", deleted)

    def _reset_database_session(self) -> None:
        """Drop the session and its connection, so the next attempt starts afresh."""
        with self.app.app_context():
            try:
                db.session.rollback()
                db.session.remove()
            except Exception as error:  # the server may be gone; the pool reconnects later
                log.info("database session dropped uncleanly: %s", describe(error))


def _message_label(message: Message) -> str:
    properties = message.properties or {}
    return str(properties.get("message_id") or message.delivery_tag)
