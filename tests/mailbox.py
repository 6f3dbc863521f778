"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""

from __future__ import annotations

import email
import re
import time
from email.message import Message

from aiosmtpd.controller import Controller

from .servers import free_port

LINK = re.compile(r"https?://\S+")


class Mailbox:
    def __init__(self):
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd calls it by this name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def wait_for(self, to: str, subject_part: str, timeout: float = 10) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["To"] == to and subject_part in message["Subject"]:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no mail to {to} about {subject_part!r}: {self.subjects()}")

    def subjects(self) -> list[tuple[str, str]]:
        return [(m["To"], m["Subject"]) for m in self.messages]

    @staticmethod
    def link_in(message: Message) -> str:
        return LINK.search(message.get_payload(decode=True).decode()).group(0)


class SmtpServer:
    def __init__(self):
        self.mailbox = Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()
