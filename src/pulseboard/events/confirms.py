"""RabbitMQ's publisher confirms for many publishes in flight: the one place that reads them.

py-amqp publishes without waiting on a connection opened without its
``confirm_publish`` option, and ``Channel.confirm_select()`` (public) puts a
channel in confirm mode; the broker then answers every publish, in order of
delivery tag, with ``basic.ack`` or ``basic.nack`` (one answer may cover all
tags up to its own).  py-amqp hands those answers to the callbacks in the
channel's ``events['basic_ack']`` and ``events['basic_nack']``, from
``Channel._on_basic_ack`` and ``._on_basic_nack``; it does not document them.
They are used here alone, and ``check_confirm_callbacks()`` runs before the app
serves and before a producer publishes: it refuses to go on, naming py-amqp's
version, when the installed py-amqp no longer calls them.

``PublisherTransport`` is kombu's AMQP transport on a py-amqp connection that
does not ask for RabbitMQ's ``connection.blocked`` notices: with that capability
py-amqp polls the socket (a timeout set and reset, a read) before every publish,
a quarter of a pipelined publish's CPU.  A producer loses nothing by it: a
blocked broker stops reading, the confirms stop, and the publishes still waiting
are reported after ``CONFIRM_TIMEOUT``.
"""

from __future__ import annotations

from importlib import metadata

import amqp
from kombu.transport import pyamqp

# The events py-amqp's channel raises for the broker's answers to publishes.
ACK, NACK = "basic_ack", "basic_nack"


class ConfirmCallbacksMissing(RuntimeError):
    """The installed py-amqp no longer hands publisher confirms to the channel's events."""


def check_confirm_callbacks() -> None:
    """Raise ``ConfirmCallbacksMissing`` unless py-amqp calls the confirm callbacks used here."""
    channel = amqp.Channel
    parts = {
        "Channel.confirm_select()": callable(vars(channel).get("confirm_select")),
        "Channel.events, a dict of callback sets": "events" in _names(channel.__init__),
        f"Channel._on_basic_ack calling events[{ACK!r}]": _raises(channel, "_on_basic_ack", ACK),
        f"Channel._on_basic_nack calling events[{NACK!r}]": _raises(
            channel, "_on_basic_nack", NACK
        ),
        "Connection.negotiate_capabilities, read as the connection opens": (
            "negotiate_capabilities" in _names(amqp.Connection._on_start)
        ),
        "Channel._setup_listeners routing basic.ack and basic.nack to them": {
            "_on_basic_ack",
            "_on_basic_nack",
        }
        <= _names(channel._setup_listeners),
    }
    missing = [part for part, present in parts.items() if not present]
    if missing:
        raise ConfirmCallbacksMissing(
            f"amqp (py-amqp) {_version()}: producers pipeline publisher confirms through "
            "parts this version lacks (see pulseboard/events/confirms.py); install the "
            "version pinned in requirements.txt:\n  " + "\n  ".join(missing)
        )


def _raises(channel: type, method: str, event: str) -> bool:
    function = vars(channel).get(method)
    return (
        callable(function) and "events" in _names(function) and event in function.__code__.co_consts
    )


def _names(function) -> set[str]:
    return set(function.__code__.co_names)


def _version() -> str:
    try:
        return metadata.version("amqp")
    except metadata.PackageNotFoundError:
        return "(not installed)"


class _UnblockedConnection(pyamqp.Connection):
    negotiate_capabilities = {
        name: wanted
        for name, wanted in amqp.Connection.negotiate_capabilities.items()
        if name != "connection.blocked"
    }


class PublisherTransport(pyamqp.Transport):
    """kombu's ``amqp://`` transport without the poll before each publish (see above)."""

    Connection = _UnblockedConnection


class ConfirmTracker:
    """The publishes of one confirm-mode channel still waiting for the broker's answer.

    ``sent(item)`` after each publish; ``wait(connection, keep, timeout)`` reads
    the broker's answers until at most ``keep`` are left waiting.  Items the broker
    refused collect in ``nacked``; whatever is neither acked nor nacked is ``waiting``.
    """

    def __init__(self, channel):
        if not isinstance(channel, amqp.Channel):
            raise TypeError(f"publisher confirms need a py-amqp channel, not {type(channel)!r}")
        channel.confirm_select()
        # The broker numbers a channel's publishes from 1 once it is in confirm mode.
        self._next_tag = 1
        self._waiting: dict[int, object] = {}  # delivery tag -> item, in tag order
        self.nacked: list = []
        channel.events[ACK].add(self._on_ack)
        channel.events[NACK].add(self._on_nack)

    def sent(self, item) -> None:
        self._waiting[self._next_tag] = item
        self._next_tag += 1

    @property
    def waiting(self) -> list:
        return list(self._waiting.values())

    def wait(self, connection, keep: int, timeout: float) -> None:
        """Read the broker's answers until at most ``keep`` publishes wait for one;
        ``TimeoutError`` when none comes for ``timeout`` seconds."""
        while len(self._waiting) > keep:
            connection.drain_events(timeout=timeout)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self.nacked.extend(self._settle(delivery_tag, multiple))

    def _settle(self, delivery_tag: int, multiple: bool) -> list:
        if not multiple:
            item = self._waiting.pop(delivery_tag, None)
            return [] if item is None else [item]
        settled = []
        while self._waiting and (oldest := next(iter(self._waiting))) <= delivery_tag:
            settled.append(self._waiting.pop(oldest))
        return settled
