"""The message bus: envelope, producer and consumer."""
