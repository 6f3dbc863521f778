"""RabbitMQ names and declarations, all derived from the app's slug.

    <slug>.events       durable topic exchange; routing key = the event's topic
    <slug>.stream       durable queue of the consumer service, bound with "#"
    <slug>.dead-letter  exchange and queue for messages the consumer refused
    <slug>.socketio     Socket.IO's fanout channel between the consumer and the web

The consumer queue can be a quorum queue and can have a single active
consumer, for operators running a RabbitMQ cluster (quorum is the default when
BROKER_URL names several nodes).  A quorum stream queue has a delivery limit:
a message redelivered more often than that without being acknowledged (the
consumer failed while holding it, again and again) goes to the dead-letter queue
instead of blocking the stream for ever.  The dead-letter queue is declared without
one: nothing consumes it, and a limit there would drop what is kept for an
operator (RabbitMQ 4 gives every quorum queue 20 by default: docs/OPERATIONS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from kombu import Exchange, Queue

# Header the consumer sets on a dead-lettered message: why it was refused.
REASON_HEADER = "x-pulseboard-reason"


@dataclass(frozen=True)
class Topology:
    slug: str
    quorum: bool = False
    single_active_consumer: bool = False
    delivery_limit: int = 20  # quorum queues only

    @classmethod
    def from_config(cls, config) -> Topology:
        return cls(
            slug=config["APP_SLUG"],
            quorum=config["EVENT_QUEUE_TYPE"] == "quorum",
            single_active_consumer=config["EVENT_SINGLE_ACTIVE_CONSUMER"],
            delivery_limit=config["EVENT_DELIVERY_LIMIT"],
        )

    @property
    def exchange(self) -> Exchange:
        return Exchange(f"{self.slug}.events", type="topic", durable=True)

    @property
    def dead_letter_exchange(self) -> Exchange:
        return Exchange(f"{self.slug}.dead-letter", type="fanout", durable=True)

    @property
    def queue(self) -> Queue:
        arguments = {"x-dead-letter-exchange": self.dead_letter_exchange.name}
        if self.quorum:
            arguments["x-queue-type"] = "quorum"
            arguments["x-delivery-limit"] = self.delivery_limit
        if self.single_active_consumer:
            arguments["x-single-active-consumer"] = True
        return Queue(
            f"{self.slug}.stream",
            exchange=self.exchange,
            routing_key="#",
            durable=True,
            queue_arguments=arguments,
        )

    @property
    def dead_letter_queue(self) -> Queue:
        return Queue(
            f"{self.slug}.dead-letter",
            exchange=self.dead_letter_exchange,
            routing_key="#",
            durable=True,
            queue_arguments={"x-queue-type": "quorum"} if self.quorum else {},
        )

    @property
    def socketio_channel(self) -> str:
        return f"{self.slug}.socketio"

    def declare(self, channel) -> None:
        """Declare everything (idempotent); a mismatch with what exists raises."""
        for entity in (
            self.exchange,
            self.dead_letter_exchange,
            self.queue,
            self.dead_letter_queue,
        ):
            entity.bind(channel).declare()
