"""The stream's use of library internals: one boundary, checked before the app serves.

Delivery relies on private parts of python-engineio, python-socketio, gunicorn,
gevent and simple-websocket.  All of them are touched in
``pulseboard/stream/internals.py`` alone, and the app refuses to start, naming
the library and its version, when an installed version lacks one.
"""

from __future__ import annotations

import queue
import re
import sys
from importlib import metadata

import engineio.socket
import pytest
import socketio
from engineio import packet as eio_packet

from pulseboard.config import PROJECT_ROOT
from pulseboard.stream.backpressure import QueueLimits
from pulseboard.stream.internals import (
    LibraryInternalsMissing,
    check_internals,
    forget_server_socket,
)

BOUNDARY = PROJECT_ROOT / "src" / "pulseboard" / "stream" / "internals.py"
# Private parts of the libraries; only the boundary module may name them.
PRIVATE_NAMES = {
    r"socket\.queue\b": "engineio Socket.queue",
    r"\.queue\.(qsize|empty|full|put|get|get_nowait|task_done|join|queue)\b": "Socket.queue",
    r"eio(_server)?\.sockets\b": "engineio Server.sockets",
    r"_send_ping": "engineio Socket._send_ping",
    r"\.upgrading\b": "engineio Socket.upgrading",
    r"\.closing\b": "engineio Socket.closing",
    r"\._async\b": "engineio Server._async",
    r"encode_cache": "engineio Packet.encode_cache",
    r"_websocket_handler": "engineio Socket._websocket_handler",
    r"\b_publish\b": "socketio KombuManager._publish",
    r"\b_queue\b": "socketio KombuManager._queue",
    r"\b_exchange\b": "socketio KombuManager._exchange",
    r"\.packet_class\b": "socketio Server.packet_class",
    r"gunicorn\.socket": "gunicorn's environ['gunicorn.socket']",
    r"\._sock\b": "gevent socket._sock",
    r"\.ws\.(connected|sock)\b": "simple-websocket's Server.connected and .sock",
    r"lean_websocket\s*=": "an attribute of ours on engineio's Socket",
    # A default would turn a missing part into silence.
    r"getattr\([^)]*[\"'](queue|_sock|ws|lean_websocket|__self__|__func__|websocket_frame)[\"']": (
        "getattr() with a default on a library's part"
    ),
}


@pytest.fixture
def engineio_socket():
    server = socketio.Server(async_mode="threading")
    return engineio.socket.Socket(server.eio, "test-socket")


def test_the_installed_libraries_have_every_part_the_stream_uses():
    check_internals()


def test_a_missing_engineio_method_stops_the_app_naming_library_and_version(monkeypatch, make_app):
    monkeypatch.delattr(engineio.socket.Socket, "_send_ping")
    with pytest.raises(LibraryInternalsMissing) as error:
        make_app()
    version = metadata.version("python-engineio")
    assert f"python-engineio {version}: Socket._send_ping" in str(error.value)


def test_a_queue_without_a_method_delivery_uses_stops_the_start(monkeypatch):
    monkeypatch.delattr(queue.Queue, "task_done")
    with pytest.raises(LibraryInternalsMissing, match=r"python-engineio \S+: the threading driver"):
        check_internals()


def test_a_missing_socketio_hook_stops_the_start(monkeypatch):
    monkeypatch.delattr(socketio.KombuManager, "_publish")
    version = metadata.version("python-socketio")
    with pytest.raises(LibraryInternalsMissing, match=rf"python-socketio {version}: .*_publish"):
        check_internals()


def test_no_module_but_the_boundary_names_a_private_part():
    found = []
    for path in sorted((PROJECT_ROOT / "src" / "pulseboard").rglob("*.py")):
        if path == BOUNDARY:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, part in PRIVATE_NAMES.items():
                if re.search(pattern, line):
                    found.append(f"{path.relative_to(PROJECT_ROOT)}:{number}: {part}")
    assert found == []


def test_a_queue_of_any_packet_shape_is_measured_without_error(engineio_socket):
    for pkt in (
        eio_packet.Packet(eio_packet.PING),  # data None
        eio_packet.Packet(eio_packet.MESSAGE, b"\x00binary"),
        eio_packet.Packet(eio_packet.MESSAGE, "text"),
        eio_packet.Packet(eio_packet.OPEN, {"sid": "x"}),
        None,  # the writer's stop signal
    ):
        engineio_socket.queue.put(pkt)
    limits = QueueLimits(packets=10, bytes=len(b"\x00binary") + len("text"))
    assert limits.is_stuck(engineio_socket) is False
    engineio_socket.queue.put(eio_packet.Packet(eio_packet.MESSAGE, "!"))
    assert limits.is_stuck(engineio_socket) is True


def test_the_kept_environ_lets_go_of_the_servers_request_objects():
    environ = {
        "gunicorn.socket": object(),
        "wsgi.early_hints": lambda headers: None,  # gunicorn's: holds its request, response
        "wsgi.errors": object(),
        "HTTP_COOKIE": "session=abc",
    }
    forget_server_socket(environ)
    assert environ == {"wsgi.errors": sys.stderr, "HTTP_COOKIE": "session=abc"}
