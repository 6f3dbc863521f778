"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""

from __future__ import annotations

import asyncio
import email
import re
import threading
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

    def wait_for(self, to: str, subject_part: str, timeout: float = 10, count: int = 1) -> Message:
        """The ``count``-th mail to ``to`` about ``subject_part``, once it has come."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.messages if m["To"] == to and subject_part in m["Subject"]]
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no mail #{count} to {to} about {subject_part!r}: {self.subjects()}")

    def subjects(self) -> list[tuple[str, str]]:
        return [(m["To"], m["Subject"]) for m in self.messages]

    @staticmethod
    def link_in(message: Message) -> str:
        return LINK.search(message.get_payload(decode=True).decode()).group(0)


class GatedMailbox(Mailbox):
    """While held, every message waits at DATA until ``release()``, as on a stalled
    mail server: the sender is stuck mid-conversation, the message not yet kept."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = 0  # messages stopped at the gate since hold()

    def hold(self) -> None:
        self.waiting = 0
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    async def handle_DATA(self, server, session, envelope):
        if not self.gate.is_set():
            self.waiting += 1
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)

    def wait_until_waiting(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.waiting < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.waiting} message(s) at the gate, expected {count}")
            time.sleep(0.02)


class SmtpServer:
    def __init__(self, mailbox: Mailbox | None = None):
        self.mailbox = mailbox or Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()
