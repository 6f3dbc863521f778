"""Ending live sockets when their session or account ends, on every instance."""

from __future__ import annotations

from ..events.emitter import NAMESPACE
from ..extensions import socketio
from .delivery import DISCONNECT


def disconnect_rooms(rooms: list[str]) -> None:
    for room in rooms:
        socketio.emit(DISCONNECT, None, namespace=NAMESPACE, to=room)


def disconnect_sessions(session_keys: list[str]) -> None:
    disconnect_rooms([f"session:{key}" for key in session_keys])


def disconnect_user(user_id: int) -> None:
    disconnect_rooms([f"user:{user_id}"])
