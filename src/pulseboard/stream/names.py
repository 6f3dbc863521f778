"""The names the stream's clients and servers agree on, defined once.

Socket.IO namespaces, the events sent on them, and the rooms sockets join: a
topic's subscribers, a user's sockets, a session's sockets.  The consumer
emits to these rooms, delivery reads them back, control messages target them.
"""

from __future__ import annotations

NAMESPACE = "/stream"
# Admin tools that speak Socket.IO: broadcast notices (admin/notices.py).
ADMIN_NAMESPACE = "/admin"

# Server → client: a batch of events of one topic, and a notice shown as a toast.
EVENTS = "events"
NOTICE = "notice"
# Sent to a room by any instance: every instance disconnects the room's sockets.
DISCONNECT = "pb:disconnect"

TOPIC_ROOM_PREFIX = "topic:"


def topic_room(topic: str) -> str:
    return f"{TOPIC_ROOM_PREFIX}{topic}"


def room_topic(room: str) -> str:
    """The topic of a room named by ``topic_room``."""
    return room.removeprefix(TOPIC_ROOM_PREFIX)


def is_topic_room(room: str) -> bool:
    return room.startswith(TOPIC_ROOM_PREFIX)


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def session_room(session_key: str) -> str:
    return f"session:{session_key}"


def token_room(token_id: int) -> str:
    """The sockets of a read token (they have no user and no session)."""
    return f"token:{token_id}"
