"""Which topics a socket may subscribe to: a user: public ones, admin
ones and their own; a read token: those its patterns match."""

from __future__ import annotations

from fnmatch import fnmatchcase

from ..events.envelope import TOPIC


def user_topic(user_id: int) -> str:
    return f"user.{user_id}"


def may_subscribe(topic: str, user_id: int, is_admin: bool, config) -> bool:
    if not TOPIC.match(topic):
        return False
    if topic == user_topic(user_id):
        return True
    if any(fnmatchcase(topic, p) for p in config["STREAM_PUBLIC_TOPICS"]):
        return True
    return is_admin and any(fnmatchcase(topic, p) for p in config["STREAM_ADMIN_TOPICS"])


def patterns_allow(patterns, topic: str) -> bool:
    """Shell-style patterns: ``market.*`` matches market.ticks; ``*`` matches all."""
    return any(fnmatchcase(topic, pattern) for pattern in patterns)


def may_read(state, topic: str, config) -> bool:
    """Whether the socket of ``state`` (``SocketState``) may subscribe to ``topic``."""
    if state.token_id is not None:
        return TOPIC.match(topic) is not None and patterns_allow(state.token_topics, topic)
    return may_subscribe(topic, state.user_id, state.is_admin, config)
