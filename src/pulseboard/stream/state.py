"""What the server remembers about each live socket of this process.

Subscriptions and their filters, the last ``seq`` delivered per topic (so a
replayed event is never sent twice), a buffer for live events that arrive
while a replay is being sent (so there is no hole between the two), and a
token bucket for the client's own messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Client messages: a steady 10 a second with bursts of 20 is plenty for a UI.
CLIENT_RATE = 10.0
CLIENT_BURST = 20
# A client that keeps flooding after this many refusals is disconnected.
ABUSE_LIMIT = 50


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
    user_id: int
    is_admin: bool
    session_key: str
    eio_sid: str
    since: int = 0  # from the handshake: where the client's last connection left off
    filters: dict[str, TopicFilter] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)
    replaying: set[str] = field(default_factory=set)
    held: list[dict] = field(default_factory=list)
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

    def begin_replay(self, topics: list[str], since: int) -> None:
        self.replaying.update(topics)
        for topic in topics:
            self.last_seq[topic] = max(self.last_seq.get(topic, 0), since)

    def end_replay(self, replayed: list[dict]) -> tuple[list[dict], list[dict]]:
        """Replayed events to send, then the live ones held meanwhile that came after."""
        topics, self.replaying = self.replaying, set()
        sent = [e for e in replayed if self._advance(e)]
        held, self.held = sorted(self.held, key=lambda e: e["seq"]), []
        after = [e for e in held if e["topic"] in topics and self._advance(e)]
        return sent, after

    def _advance(self, event: dict) -> bool:
        rule = self.filters.get(event["topic"])
        if rule is None or not rule.accepts(event):
            return False
        if event["seq"] <= self.last_seq.get(event["topic"], 0):
            return False
        self.last_seq[event["topic"]] = event["seq"]
        return True


class Registry:
    """sid → SocketState for this process, and engine.io sid → session for its sockets."""

    def __init__(self):
        self.sockets: dict[str, SocketState] = {}
        self.session_of_eio: dict[str, str] = {}

    def add(self, sid: str, state: SocketState) -> None:
        self.sockets[sid] = state
        self.session_of_eio[state.eio_sid] = state.session_key

    def remove(self, sid: str) -> None:
        state = self.sockets.pop(sid, None)
        if state is not None:
            self.session_of_eio.pop(state.eio_sid, None)

    def get(self, sid: str) -> SocketState | None:
        return self.sockets.get(sid)


registry = Registry()
