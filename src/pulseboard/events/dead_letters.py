"""The queues as an operator sees them, and acting on one dead letter.

Depths and consumer counts come from a passive ``queue_declare``: it reads a
queue without creating or changing it, and needs no management plugin.

Looking at the dead-letter queue must never lose a message.  Messages are
taken with ``basic_get`` on a channel of their own and left unacknowledged;
closing that channel gives back every one not acted on, in its place.  They
are never rejected: RabbitMQ counts a rejection as a failed delivery, and a
quorum queue drops a message after too many (its delivery limit).  Requeue
republishes the body to the events exchange and waits for the broker's
confirm before acknowledging the dead letter, so a failure leaves it in the
dead-letter queue rather than nowhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass

from kombu import Connection, Producer

from . import bus
from .topology import REASON_HEADER, Topology

log = logging.getLogger(__name__)

# Most dead letters shown, and looked through to find the one acted on.
SHOWN = 20
SEARCHED = 1000
PREVIEW_CHARS = 300
# Headers that describe the refusal, not the event: dropped when requeued.
REFUSAL_HEADERS = (
    REASON_HEADER,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-delivery-count",
)
# Why RabbitMQ itself dead-lettered a message (x-first-death-reason), when the
# consumer did not say why.
BROKER_REASONS = {
    "delivery_limit": "the delivery limit was reached: delivered more than "
    "EVENT_DELIVERY_LIMIT times and never acknowledged (the consumer failed holding it)",
    "rejected": "rejected by a consumer",
    "expired": "expired in the queue",
    "maxlen": "dropped from a full queue",
}


@dataclass(frozen=True)
class QueueStatus:
    name: str
    messages: int | None = None
    consumers: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    fingerprint: str  # names the message in the requeue and discard forms
    message_id: str | None
    routing_key: str
    reason: str
    preview: str
    size: int


class DeadLetterNotFound(LookupError):
    """No message with that fingerprint in the dead-letter queue (any more)."""


def _connect(broker_url: str, timeout: float) -> Connection:
    connection = bus.connect(
        broker_url,
        connect_timeout=timeout,
        transport_options={"confirm_publish": True, "max_retries": 0},
    )
    connection.ensure_connection(max_retries=bus.retries_for_each_node(broker_url), timeout=timeout)
    return connection


def queue_status(broker_url: str, topology: Topology, timeout: float) -> list[QueueStatus]:
    """Depth and consumers of the consumer queue and the dead-letter queue."""
    names = (topology.queue.name, topology.dead_letter_queue.name)
    try:
        connection = _connect(broker_url, timeout)
    except Exception as error:  # shown on the page: the broker is the thing being checked
        reason = f"broker unreachable: {type(error).__name__}: {error}"[:300]
        return [QueueStatus(name, error=reason) for name in names]
    statuses = []
    with connection:
        for name in names:
            channel = connection.channel()  # a failed passive declare closes its channel
            try:
                _, messages, consumers = channel.queue_declare(queue=name, passive=True)
                statuses.append(QueueStatus(name, messages, consumers))
            except Exception as error:
                statuses.append(QueueStatus(name, error=f"{type(error).__name__}: {error}"[:300]))
            finally:
                _close_quietly(channel)
    return statuses


def peek(broker_url: str, topology: Topology, timeout: float, limit: int = SHOWN) -> list:
    """The oldest ``limit`` dead letters, all of them left in the queue."""
    with _connect(broker_url, timeout) as connection, _borrowed(connection, topology) as take:
        shown = []
        while len(shown) < limit and (message := take()) is not None:
            shown.append(_describe(message))
        return shown


def requeue(broker_url: str, topology: Topology, fingerprint: str, timeout: float) -> DeadLetter:
    """Publish the dead letter to the events exchange again, then remove it."""
    with _connect(broker_url, timeout) as connection, _borrowed(connection, topology) as take:
        message = _find(take, fingerprint)
        headers = {k: v for k, v in (message.headers or {}).items() if k not in REFUSAL_HEADERS}
        properties = message.properties or {}
        extra = {"message_id": properties["message_id"]} if "message_id" in properties else {}
        # Its own channel: the confirm is awaited there, and a failure here leaves the
        # borrowed channel to give the dead letter back.
        Producer(connection.channel()).publish(
            message.body,
            exchange=topology.exchange,
            routing_key=message.delivery_info.get("routing_key", ""),
            headers=headers,
            content_type=message.content_type or "application/json",
            content_encoding=message.content_encoding or "binary",
            delivery_mode=2,
            **extra,
        )
        message.ack()
        return _describe(message)


def discard(broker_url: str, topology: Topology, fingerprint: str, timeout: float) -> DeadLetter:
    """Remove the dead letter for good."""
    with _connect(broker_url, timeout) as connection, _borrowed(connection, topology) as take:
        message = _find(take, fingerprint)
        message.ack()
        return _describe(message)


@contextlib.contextmanager
def _borrowed(connection: Connection, topology: Topology):
    """A ``take()`` for the dead-letter queue, on a channel of its own.

    RabbitMQ gives back what was taken and not acknowledged when the channel
    closes; kombu's in-process transport (embedded mode) drops it instead, so
    there it is requeued explicitly (a rejection counts for nothing there).
    """
    channel = connection.channel()
    queue = topology.dead_letter_queue.bind(channel)
    taken = []

    def take():
        message = queue.get(no_ack=False)
        if message is not None:
            taken.append(message)
        return message

    try:
        yield take
    finally:
        if connection.transport.driver_type != "amqp":
            for message in taken:
                if not message.acknowledged:
                    message.reject(requeue=True)
        _close_quietly(channel)


def _find(take, fingerprint: str):
    for _ in range(SEARCHED):
        message = take()
        if message is None:
            break
        if fingerprint_of(message) == fingerprint:
            return message
    raise DeadLetterNotFound(fingerprint)


def fingerprint_of(message) -> str:
    """Same body and id, same fingerprint: acting on either copy is the same act."""
    digest = hashlib.sha256(_body_bytes(message))
    digest.update(str((message.properties or {}).get("message_id", "")).encode())
    return digest.hexdigest()[:32]


def _describe(message) -> DeadLetter:
    body = _body_bytes(message)
    return DeadLetter(
        fingerprint=fingerprint_of(message),
        message_id=(message.properties or {}).get("message_id"),
        routing_key=message.delivery_info.get("routing_key", ""),
        reason=_reason(message.headers or {}),
        preview=body[:PREVIEW_CHARS].decode("utf-8", errors="replace"),
        size=len(body),
    )


def _reason(headers: dict) -> str:
    if REASON_HEADER in headers:
        return str(headers[REASON_HEADER])
    broker_reason = str(headers.get("x-first-death-reason", ""))
    return BROKER_REASONS.get(broker_reason, broker_reason or "no reason recorded")


def _body_bytes(message) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else str(body).encode()


def _close_quietly(channel) -> None:
    try:
        channel.close()
    except Exception:  # already closed by the broker after a failed declare
        log.debug("channel already closed", exc_info=True)
