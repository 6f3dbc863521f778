"""Checking what a client sends: the ``subscribe`` and ``unsubscribe`` payloads."""

from __future__ import annotations

from dataclasses import dataclass

from ..events.envelope import TYPE
from .state import TopicFilter

MAX_LIST = 64
MAX_TEXT = 200


class InvalidRequest(ValueError):
    """The payload is malformed; ``str()`` is the error the ack carries."""


@dataclass(frozen=True)
class SubscribeRequest:
    topics: list[str]
    filter: TopicFilter
    since: int | dict[str, int] | None  # one position for every topic, or one per topic

    def position(self, topic: str, default: int) -> int:
        """Where ``topic``'s replay starts: its own position, the request's, or ``default``
        (the handshake's ``since``)."""
        if isinstance(self.since, dict):
            return self.since.get(topic, default)
        return default if self.since is None else self.since


def _strings(data: dict, name: str, required: bool = False) -> list[str] | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name} is required: a list of strings")
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{name} must be a list of strings")
    if len(value) > MAX_LIST:
        raise InvalidRequest(f"{name} may hold at most {MAX_LIST} items")
    if any(not 0 < len(v) <= MAX_TEXT for v in value):
        raise InvalidRequest(f"each of {name} must be 1-{MAX_TEXT} characters")
    return list(dict.fromkeys(value))


def parse_subscribe(data, config) -> SubscribeRequest:
    if not isinstance(data, dict):
        raise InvalidRequest("subscribe takes an object: {topics: [...]}")
    unknown = sorted(set(data) - {"topics", "types", "keys", "since"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}")
    topics = _strings(data, "topics", required=True)
    if not topics:
        raise InvalidRequest("topics must name at least one topic")
    types = _strings(data, "types")
    if types is not None and not all(TYPE.match(t) for t in types):
        raise InvalidRequest("types must be event types like tick")
    keys = _strings(data, "keys")
    since = data.get("since")
    if isinstance(since, dict):
        if set(since) - set(topics):
            raise InvalidRequest("since may give positions only for the topics asked for")
        if not all(_is_position(value) for value in since.values()):
            raise InvalidRequest("each position in since must be a whole number, 0 or more")
    elif since is not None and not _is_position(since):
        raise InvalidRequest("since must be a whole number, 0 or more, or {topic: seq}")
    return SubscribeRequest(
        topics=topics,
        filter=TopicFilter(
            types=frozenset(types) if types else None,
            keys=frozenset(keys) if keys else None,
        ),
        since=since,
    )


def _is_position(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_unsubscribe(data) -> list[str]:
    if not isinstance(data, dict) or set(data) - {"topics"}:
        raise InvalidRequest("unsubscribe takes an object: {topics: [...]}")
    return _strings(data, "topics", required=True)


@dataclass(frozen=True)
class FillRequest:
    topic: str
    after: int
    before: int


def parse_fill(data) -> FillRequest:
    """``fill`` {topic, after, before}: the events of a topic between two seqs."""
    if not isinstance(data, dict) or set(data) != {"topic", "after", "before"}:
        raise InvalidRequest("fill takes an object: {topic, after, before}")
    topic, after, before = data["topic"], data["after"], data["before"]
    if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TEXT:
        raise InvalidRequest(f"topic must be a string of 1-{MAX_TEXT} characters")
    if not (_is_position(after) and _is_position(before)) or before <= after:
        raise InvalidRequest("after and before must be whole numbers, after < before")
    return FillRequest(topic, after, before)
