"""Ending live sockets when their session, account or rights end, on every instance."""

from __future__ import annotations

from ..events.emitter import ADMIN_NAMESPACE, NAMESPACE
from ..extensions import socketio
from .delivery import DISCONNECT

# Every namespace whose sockets act for a signed-in user.
SIGNED_IN_NAMESPACES = (NAMESPACE, ADMIN_NAMESPACE)


def session_room(session_key: str) -> str:
    return f"session:{session_key}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def disconnect_rooms(rooms: list[str]) -> None:
    for room in rooms:
        for namespace in SIGNED_IN_NAMESPACES:
            socketio.emit(DISCONNECT, None, namespace=namespace, to=room)


def disconnect_sessions(session_keys: list[str]) -> None:
    disconnect_rooms([session_room(key) for key in session_keys])


def disconnect_user(user_id: int) -> None:
    disconnect_rooms([user_room(user_id)])
