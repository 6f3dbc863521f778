"""What the server remembers about each live socket of this process.

Subscriptions and their filters, the last ``seq`` delivered per topic (so a
replayed event is never sent twice), a buffer for live events that arrive
while a replay is being sent (so there is no hole between the two), and a
token bucket for the client's own messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .names import ADMIN_NAMESPACE, NAMESPACE

# Client messages: a steady 10 a second with bursts of 20 is plenty for a UI.
CLIENT_RATE = 10.0
CLIENT_BURST = 20
# A client that keeps flooding after this many refusals is disconnected.
ABUSE_LIMIT = 50
# Live events held for a socket while its replay pages are read.  Past this many
# they are let go: they are in the log, and the replay reads one more page.
HOLD_LIMIT = 5000


@dataclass(frozen=True)
class TopicFilter:
    types: frozenset[str] | None = None  # None: every type
    keys: frozenset[str] | None = None  # None: every key

    def accepts(self, event: dict) -> bool:
        if self.types is not None and event["type"] not in self.types:
            return False
        return self.keys is None or event.get("key") in self.keys


@dataclass
class TokenBucket:
    rate: float = CLIENT_RATE
    burst: int = CLIENT_BURST
    tokens: float = CLIENT_BURST
    stamp: float = field(default_factory=time.monotonic)
    refused: int = 0

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.refused += 1
        return False


@dataclass
class SocketState:
    user_id: int | None  # None: a read token's socket
    is_admin: bool
    # The session that opened the socket; a token socket: its token's binding (guard).
    session_key: str
    eio_sid: str
    since: int = 0  # from the handshake: where the client's last connection left off
    token_id: int | None = None  # a read token's socket: the token, and its patterns
    token_topics: tuple[str, ...] = ()
    filters: dict[str, TopicFilter] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)
    replaying: set[str] = field(default_factory=set)
    held: list[dict] = field(default_factory=list)
    held_overflowed: bool = False
    bucket: TokenBucket = field(default_factory=TokenBucket)

    def select(self, topic: str, events: list[dict]) -> list[dict]:
        """The events of a round for ``topic`` (in ``seq`` order, each once) that this
        socket wants and has not had.

        A socket that takes the round whole (no type or key filter, none of it
        delivered yet) gets the round itself, so that alike sockets share one
        encoding of it.  During a replay of the topic they are held instead.
        """
        rule = self.filters.get(topic)
        if rule is None or not events:
            return []
        if topic in self.replaying:
            self.held.extend(event for event in events if rule.accepts(event))
            if len(self.held) > HOLD_LIMIT:
                self.held, self.held_overflowed = [], True
            return []
        last = self.last_seq.get(topic, 0)
        if rule.types is None and rule.keys is None and events[0]["seq"] > last:
            chosen = events
        else:
            # Skips what was delivered already (a redelivery, or sent by the replay).
            chosen = [event for event in events if event["seq"] > last and rule.accepts(event)]
        if chosen:
            self.last_seq[topic] = chosen[-1]["seq"]
        return chosen

    def begin_replay(self, positions: dict[str, int]) -> None:
        """Hold live events for these topics, and send nothing at or below each position."""
        self.replaying.update(positions)
        for topic, position in positions.items():
            self.last_seq[topic] = max(self.last_seq.get(topic, 0), position)

    def advance_replay(self, page: list[dict]) -> list[dict]:
        """The events of a replay page to send: wanted, and not sent already."""
        return [event for event in page if self._advance(event)]

    def take_overflow(self) -> bool:
        """Whether held events were let go since the last call (read them from the log)."""
        overflowed, self.held_overflowed = self.held_overflowed, False
        return overflowed

    def end_replay(self) -> list[dict]:
        """The live events held during the replay that came after it, to send now."""
        topics, self.replaying = self.replaying, set()
        held, self.held = sorted(self.held, key=lambda e: e["seq"]), []
        return [e for e in held if e["topic"] in topics and self._advance(e)]

    def _advance(self, event: dict) -> bool:
        rule = self.filters.get(event["topic"])
        if rule is None or not rule.accepts(event):
            return False
        if event["seq"] <= self.last_seq.get(event["topic"], 0):
            return False
        self.last_seq[event["topic"]] = event["seq"]
        return True


@dataclass(frozen=True)
class SocketOwner:
    """Who holds a socket, as checked when it connected; rechecked against the database."""

    user_id: int | None
    session_key: str
    is_admin: bool
    eio_sid: str
    token_id: int | None = None  # a read token's socket: rechecked against the token


class Registry:
    """This process's live sockets: ``/stream`` state and ``/admin`` owners by sid, and
    the session each Engine.IO connection is bound to (``guard.SessionBoundSockets``)."""

    def __init__(self):
        self.sockets: dict[str, SocketState] = {}
        self.admin_sockets: dict[str, SocketOwner] = {}
        self.session_of_eio: dict[str, str] = {}
        # One Engine.IO connection can carry both namespaces: bound while either is open.
        self._namespaces_of_eio: dict[str, int] = {}

    def add(self, sid: str, state: SocketState) -> None:
        self.sockets[sid] = state
        self.bind(state.eio_sid, state.session_key)

    def remove(self, sid: str) -> None:
        state = self.sockets.pop(sid, None)
        if state is not None:
            self.release(state.eio_sid)

    def get(self, sid: str) -> SocketState | None:
        return self.sockets.get(sid)

    def bind(self, eio_sid: str, session_key: str) -> None:
        self.session_of_eio[eio_sid] = session_key
        self._namespaces_of_eio[eio_sid] = self._namespaces_of_eio.get(eio_sid, 0) + 1

    def release(self, eio_sid: str) -> None:
        left = self._namespaces_of_eio.pop(eio_sid, 1) - 1
        if left > 0:
            self._namespaces_of_eio[eio_sid] = left
        else:
            self.session_of_eio.pop(eio_sid, None)

    def owners(self) -> list[tuple[str, str, SocketOwner]]:
        """``(namespace, sid, owner)`` for every socket of this process."""
        found = [
            (
                NAMESPACE,
                sid,
                SocketOwner(s.user_id, s.session_key, s.is_admin, s.eio_sid, s.token_id),
            )
            for sid, s in list(self.sockets.items())
        ]
        found += [(ADMIN_NAMESPACE, sid, owner) for sid, owner in list(self.admin_sockets.items())]
        return found


registry = Registry()
