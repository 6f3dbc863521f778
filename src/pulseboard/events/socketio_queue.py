"""Socket.IO's RabbitMQ client manager, with two changes the product needs.

* Each web process's own queue is declared exclusive: RabbitMQ 4.3 refuses
  the transient non-exclusive queues python-socketio declares by default, and
  an exclusive queue also disappears the moment its process does.
* A publish that still fails after its retries raises instead of being logged
  and dropped, so the consumer never acknowledges an event it did not emit.
* Publishes take turns on the one publishing connection: python-socketio shares
  it between every greenlet of the process, and two writing at once on one
  AMQP socket break it (gevent's ConcurrentObjectUseError, seen in a reconnect
  storm when replays emitted through the queue).
"""

from __future__ import annotations

import threading
import uuid

import kombu

from ..stream.internals import KombuHooks

PUBLISH_RETRIES = 3


class EmitFailed(RuntimeError):
    """The Socket.IO message queue did not take a message."""


class KombuManager(KombuHooks):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._publishing = threading.Lock()  # gevent's own once the process is patched

    def listener_queue(self):
        return kombu.Queue(
            f"python-socketio.{uuid.uuid4()}",
            self.exchange(),
            durable=False,
            exclusive=True,
            auto_delete=True,
        )

    def publish_message(self, data) -> None:
        with self._publishing:
            self._publish_now(data)

    def _publish_now(self, data) -> None:
        try:
            producer = self.publisher_connection.Producer(
                exchange=self.exchange(), **self.producer_options
            )
            publish = self.publisher_connection.ensure(
                producer, producer.publish, max_retries=PUBLISH_RETRIES
            )
            publish(self.json.dumps(data))
        except Exception as error:
            raise EmitFailed(f"Socket.IO message queue refused a message: {error}") from error
