"""Which topics a user may subscribe to: public ones, admin ones, and their own."""

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
