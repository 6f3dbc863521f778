"""Ending live sockets when their session, account, rights or token end, on every instance."""

from __future__ import annotations

from ..extensions import socketio
from .names import ADMIN_NAMESPACE, DISCONNECT, NAMESPACE, session_room, token_room, user_room

# Every namespace whose sockets act for a signed-in user.
SIGNED_IN_NAMESPACES = (NAMESPACE, ADMIN_NAMESPACE)


def disconnect_rooms(rooms: list[str]) -> None:
    for room in rooms:
        for namespace in SIGNED_IN_NAMESPACES:
            socketio.emit(DISCONNECT, None, namespace=namespace, to=room)


def disconnect_sessions(session_keys: list[str]) -> None:
    disconnect_rooms([session_room(key) for key in session_keys])


def disconnect_user(user_id: int) -> None:
    disconnect_rooms([user_room(user_id)])


def disconnect_token(token_id: int) -> None:
    disconnect_rooms([token_room(token_id)])
