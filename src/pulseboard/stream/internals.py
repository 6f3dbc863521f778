"""The one place that touches private parts of the libraries under the stream.

Delivery needs more of python-engineio than its public API offers: a socket's
outgoing queue (to bound it), the server's table of async drivers (to put our
WebSocket wrapper and queue in), the ping task (to send every socket's pings
from one greenlet), the WebSocket writer task (to run it only while something
waits to be written), a packet's encoding cache (to frame one message for many
sockets).
It also relies on python-socketio's RabbitMQ hooks, gunicorn's socket in the
WSGI environ, gevent's non-blocking socket and simple-websocket's connection;
and the embedded bus on how kombu's file-system transport names and reads its
message files.
Each such touch is a small function here; nothing else in the package names a
private part (``tests/test_internals.py`` keeps it so).

An upgrade can move any of them, and twice a moved part silently switched a
protection off.  ``check_internals()`` runs before the app serves: it looks for
every part used here in the installed versions and refuses to start, naming the
library, its version and what is missing.
"""

from __future__ import annotations

import _socket
import importlib
import inspect
import os
import socket as stdlib_socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from importlib import metadata
from types import MethodType

import gevent.socket
import socketio
from engineio import exceptions as engineio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
from engineio.base_socket import BaseSocket
from engineio.socket import Socket as EngineIOSocket
from gevent.event import Event
from gevent.queue import Empty
from kombu.exceptions import ChannelError
from kombu.transport import filesystem as kombu_filesystem
from kombu.utils.json import dumps as kombu_dumps

# Engine.IO's async drivers this app runs on (pulseboard.async_mode()).
ASYNC_MODES = ("threading", "gevent")
# What delivery does with an Engine.IO socket's outgoing queue, in both drivers.
QUEUE_METHODS = ("qsize", "empty", "put", "get_nowait", "task_done")
# The driver table's entries Engine.IO and wire.install() use.
DRIVER_KEYS = ("websocket", "queue", "queue_empty", "sleep", "thread")
GUNICORN_SOCKET = "gunicorn.socket"
GUNICORN_EARLY_HINTS = "wsgi.early_hints"


class LibraryInternalsMissing(RuntimeError):
    """An installed library lacks a private part the stream relies on."""


# --- python-engineio: sockets and their outgoing queues ---------------------------------


def engineio_socket(server, eio_sid: str) -> EngineIOSocket | None:
    """The Engine.IO socket of ``eio_sid`` on a Socket.IO ``server``; None once it is gone."""
    return server.eio.sockets.get(eio_sid)


def queue_length(eio_socket: EngineIOSocket) -> int:
    """Packets waiting in the socket's outgoing queue for its writer (or the next poll)."""
    return eio_socket.queue.qsize()


def queue_is_empty(eio_socket: EngineIOSocket) -> bool:
    return eio_socket.queue.empty()


def waiting_packets(eio_socket: EngineIOSocket) -> list:
    """A copy of what the outgoing queue holds: packets, and ``None`` (the writer's stop)."""
    return list(eio_socket.queue.queue)  # the deque behind gevent's and the stdlib's queues


def discard_queued(eio_socket: EngineIOSocket) -> None:
    """Empty a closed socket's outgoing queue, then tell its writer to stop once it wakes."""
    queue = eio_socket.queue
    while not queue.empty():
        queue.get_nowait()
        queue.task_done()
    queue.put(None)


class WakingQueue:
    """An Engine.IO socket's outgoing queue under gevent, calling ``waker`` (when set)
    after each ``put``: a socket served by ``LeanWebSocket`` has its writer run only
    while the queue holds packets.

    It does what Engine.IO and delivery use of gevent's ``JoinableQueue`` (``put``,
    ``get`` with a timeout, ``get_nowait``, ``task_done``, ``join``, ``qsize``,
    ``empty``, the ``queue`` of what waits), and holds nothing while nothing waits:
    gevent's holds three deques and an event from the start, about 3.7 KB for each
    socket, and even an empty deque takes 760 bytes.  Most packets never wait
    (delivery writes straight to an idle socket), so most sockets' queues are empty.
    """

    __slots__ = ("_arrived", "_done", "_items", "unfinished_tasks", "waker")

    def __init__(self):
        self._items: deque | None = None  # made by a put, let go once emptied
        self.unfinished_tasks = 0
        self.waker: Callable[[], None] | None = None
        self._arrived: Event | None = None  # once a get() has waited (long-polling)
        self._done: Event | None = None  # once a join() has waited (a server-side close)

    @property
    def queue(self) -> deque | tuple:
        """What waits, oldest first."""
        return () if self._items is None else self._items

    def qsize(self) -> int:
        return 0 if self._items is None else len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put(self, item, block=True, timeout=None) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self.unfinished_tasks += 1
        if self._done is not None:
            self._done.clear()
        if self._arrived is not None:
            self._arrived.set()
        if self.waker is not None:
            self.waker()

    def get(self, block=True, timeout=None):
        if block and not self._items:
            self._wait_for_item(timeout)
        if not self._items:
            raise Empty
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    def get_nowait(self):
        return self.get(block=False)

    def _wait_for_item(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items:
            if self._arrived is None:
                self._arrived = Event()
            self._arrived.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self._arrived.wait(remaining)

    def task_done(self) -> None:
        if self.unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        self.unfinished_tasks -= 1
        if self.unfinished_tasks == 0 and self._done is not None:
            self._done.set()

    def join(self, timeout: float | None = None) -> bool:
        if self.unfinished_tasks == 0:
            return True
        if self._done is None:
            self._done = Event()
        return self._done.wait(timeout)


# What ``take_queued`` returns when nothing waits (``None`` is the writer's stop).
NOTHING_QUEUED = object()


def wake_on_put(eio_socket: EngineIOSocket, waker: Callable[[], None]) -> None:
    """Call ``waker`` after each packet put on the socket's ``WakingQueue``."""
    eio_socket.queue.waker = waker


def take_queued(eio_socket: EngineIOSocket):
    """The next packet waiting for the socket's writer, taken off its queue (``None``:
    the stop signal); ``NOTHING_QUEUED`` when the queue is empty."""
    queue = eio_socket.queue
    if queue.empty():
        return NOTHING_QUEUED
    pkt = queue.get_nowait()
    queue.task_done()
    return pkt


def is_upgrading(eio_socket: EngineIOSocket) -> bool:
    """Whether the socket is moving from long-polling to WebSocket (sends must queue)."""
    return eio_socket.upgrading


# --- python-engineio: pings -------------------------------------------------------------


def is_ping_task(target) -> bool:
    """Whether ``target`` is the task ``Socket.schedule_ping`` starts for the next ping."""
    return type(target) is MethodType and target.__func__ is EngineIOSocket._send_ping


def send_ping_now(eio_socket: EngineIOSocket) -> None:
    """What ``Socket._send_ping`` does once its sleep is over."""
    if not eio_socket.closing and not eio_socket.closed:
        eio_socket.last_ping = time.time()
        eio_socket.send(eio_packet.Packet(eio_packet.PING))


# --- python-engineio: the WebSocket driver --------------------------------------------------


def websocket_driver(eio_server) -> type:
    """The WebSocket wrapper class of the server's async driver."""
    return eio_server._async["websocket"]


def set_websocket_driver(eio_server, driver: type, queue: type | None = None) -> None:
    """Use ``driver`` for this server's WebSockets (and ``queue``, when given, for its
    sockets' outgoing queues).  Engine.IO shares its driver table between the servers
    of a process; this server gets a copy of its own."""
    drivers = dict(eio_server._async)
    drivers["websocket"] = driver
    if queue is not None:
        drivers["queue"] = queue
    eio_server._async = drivers


# --- python-engineio: the WebSocket handler's steps, as messages arrive ----------------------
#
# ``Socket._websocket_handler`` serves a WebSocket by blocking on it for the
# connection's whole life: under gevent a parked greenlet for each idle socket.
# ``LeanWebSocket`` takes the same steps as each message arrives instead, with no
# greenlet in between; these are the steps, as the handler takes them.

PROBE = "probe"
# The upgrade's answer to the client's probe ("2probe"), sent on the new WebSocket.
PROBE_ANSWER = eio_packet.Packet(eio_packet.PONG, data=PROBE).encode()


def open_websocket(eio_socket: EngineIOSocket) -> bool:
    """The handler's first step.  True when the socket was open on long-polling: an
    upgrade, whose probe and upgrade packet come first (sends are held meanwhile)."""
    if eio_socket.connected:
        eio_socket.upgrading = True
        return True
    eio_socket.connected = True
    eio_socket.upgraded = True
    return False


def answer_probe(eio_socket: EngineIOSocket, message, send: Callable) -> bool:
    """The upgrade's first message must be the probe: answer it on the WebSocket with
    ``send``, and end the poll in progress.  False (the upgrade failed, the socket stays
    on long-polling) for anything else."""
    pkt = eio_packet.Packet(encoded_packet=message)
    if pkt.packet_type != eio_packet.PING or pkt.data != PROBE:
        logger = eio_socket.server.logger
        logger.info("%s: Failed websocket upgrade, no PING packet", eio_socket.sid)
        eio_socket.upgrading = False
        return False
    send(PROBE_ANSWER)
    eio_socket.queue.put(eio_packet.Packet(eio_packet.NOOP))
    return True


def finish_upgrade(eio_socket: EngineIOSocket, message) -> bool:
    """The upgrade's second message must be the upgrade packet: the socket is on WebSocket
    from now on.  False (it stays on long-polling) for anything else."""
    pkt = eio_packet.Packet(encoded_packet=message)
    eio_socket.upgrading = False
    eio_socket.upgraded = pkt.packet_type == eio_packet.UPGRADE
    if not eio_socket.upgraded:
        eio_socket.server.logger.info(
            "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.",
            eio_socket.sid, message,
        )  # fmt: skip
    return eio_socket.upgraded


def receive_message(eio_socket: EngineIOSocket, message) -> bool:
    """Hand a message from the WebSocket to the socket, as the handler's loop does;
    False when the loop would end (the socket is closed, or the packet broke it)."""
    try:
        eio_socket.receive(eio_packet.Packet(encoded_packet=message))
    except engineio_exceptions.UnknownPacketError:
        pass
    except engineio_exceptions.SocketIsClosedError:
        eio_socket.server.logger.info("Receive error -- socket is closed")
        return False
    except Exception:  # the handler's own catch-all: log it, end the connection properly
        eio_socket.server.logger.exception("Unknown receive error")
        return False
    return True


def close_after_websocket(eio_socket: EngineIOSocket, writer) -> None:
    """The handler's last step, once the WebSocket is gone: stop the writer, wait for it,
    and close the socket (its disconnect handlers run)."""
    eio_socket.queue.put(None)
    writer.join()
    eio_socket.close(wait=False, abort=True, reason=eio_socket.server.reason.TRANSPORT_CLOSE)


def socket_of_handler(handler) -> EngineIOSocket:
    """The Engine.IO socket whose WebSocket handler (``Socket._websocket_handler``,
    bound) the driver was given."""
    return handler.__self__


# --- python-engineio and python-socketio: packets -------------------------------------------


def cache_encoded(pkt: eio_packet.Packet, encoded) -> None:
    """Make ``pkt.encode()`` return ``encoded`` from now on."""
    pkt.encode_cache = encoded


def socketio_packet_class(server) -> type:
    """The Socket.IO packet class the ``server`` encodes with (JSON or msgpack)."""
    return server.packet_class


def start_manager(server) -> None:
    """Start the client manager (on RabbitMQ: its listener on the fan-out) now, as
    python-socketio does only on the first Engine.IO connection; an instance serving
    only event streams would otherwise never listen."""
    if not server.manager_initialized:
        server.manager_initialized = True
        server.manager.initialize()


# --- python-socketio: the RabbitMQ manager's hooks --------------------------------------


class KombuHooks(socketio.KombuManager):
    """python-socketio's RabbitMQ manager with the hooks it calls under names of our own:
    ``listener_queue()`` for its ``_queue()``, ``publish_message()`` for its
    ``_publish()``, ``exchange()`` for its ``_exchange()``."""

    def _queue(self):
        return self.listener_queue()

    def _publish(self, data):
        return self.publish_message(data)

    def listener_queue(self):
        return super()._queue()

    def publish_message(self, data) -> None:
        super()._publish(data)

    def exchange(self):
        return self._exchange()


# --- gunicorn and gevent: the connection's own socket ---------------------------------------


def gunicorn_socket(environ) -> stdlib_socket.socket | None:
    """The client connection gunicorn put in the WSGI environ; None under other servers."""
    return environ.get(GUNICORN_SOCKET)


def forget_server_socket(environ) -> None:
    """Drop the server's connection objects from an environ Engine.IO keeps: its socket,
    and gunicorn's early-hints callback and error stream, which hold its request and
    response objects (with the request's headers and read buffer) for the socket's life."""
    environ.pop(GUNICORN_SOCKET, None)
    environ.pop("eventlet.input", None)
    environ.pop(GUNICORN_EARLY_HINTS, None)
    environ["wsgi.errors"] = sys.stderr


def nonblocking_socket(sock):
    """The non-blocking socket under a gevent socket (its ``send`` never waits); a plain
    socket as it is."""
    return sock._sock if isinstance(sock, gevent.socket.socket) else sock


# --- simple-websocket, under Engine.IO's stock WebSocket wrapper ----------------------------


def has_simple_websocket(driver: type) -> bool:
    """Whether the WebSocket wrapper class serves connections with simple-websocket."""
    return issubclass(driver, SimpleWebSocketWSGI)


def send_frame(wrapper, frame: bytes) -> None:
    """Write a ready WebSocket frame on simple-websocket's connection, as it is."""
    connection = wrapper.ws
    if not connection.connected:
        raise OSError("WebSocket closed")
    connection.sock.sendall(frame)


# --- the start-up check ---------------------------------------------------------------------


# --- kombu: the file-system transport (the embedded bus) --------------------------------

_stamp_lock = threading.Lock()
_last_stamp = 0


def _next_stamp() -> int:
    """Nanoseconds on the host's monotonic clock, rising within this process."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.monotonic_ns(), _last_stamp + 1)
        return _last_stamp


class _WholeMessageChannel(kombu_filesystem.Channel):
    """kombu's file-system channel, writing each message whole before it can be seen.

    kombu's own ``_put`` creates the file, then writes it, and its ``_get`` does
    not wait for the writer's lock: a consumer that lists the folder in between
    takes an empty file and the message is lost.  Here the message is written
    under a name ``_get`` skips and renamed into place, and the name sorts by a
    nanosecond stamp (kombu's is a millisecond, in random order within one), so
    a producer's messages are consumed in the order it sent them."""

    def _put(self, queue, payload, **kwargs):
        name = f"{_next_stamp():020d}_{uuid.uuid4().hex}.{queue}.msg"
        folder = self.data_folder_out
        partial = os.path.join(folder, f".{name}.part")
        try:
            with open(partial, "wb") as file:
                file.write(kombu_dumps(payload).encode())
            os.replace(partial, os.path.join(folder, name))
        except OSError as error:
            raise ChannelError(f"cannot add message {name} to {folder}") from error


class WholeMessageFolderTransport(kombu_filesystem.Transport):
    Channel = _WholeMessageChannel


def folder_transport() -> type:
    """The transport class for ``filesystem://``; refuses if kombu's has moved."""
    if not _folder_transport_parts():
        raise LibraryInternalsMissing(
            f"kombu {installed_version('kombu')}: the file-system transport no longer "
            "reads messages named '<sortable>.<queue>.msg' from data_folder_in in name "
            "order (see pulseboard/stream/internals.py); install the pinned kombu"
        )
    return WholeMessageFolderTransport


def _folder_transport_parts() -> bool:
    channel = kombu_filesystem.Channel
    return (
        _defines(channel, "_put")
        and _defines(channel, "_get")
        and _calls(channel._get, "listdir", "data_folder_in", "partition")
        and "sorted" in channel._get.__code__.co_names
        and "data_folder_out" in vars(channel)
        and kombu_filesystem.Transport.Channel is channel
    )


def check_internals() -> None:
    """Raise ``LibraryInternalsMissing`` unless every private part used here exists."""
    missing = []
    for library, part, probe in probes():
        try:
            present, error = bool(probe()), ""
        except Exception as exc:  # a probe that cannot run: the part has moved
            present, error = False, f" ({type(exc).__name__}: {exc})"
        if not present:
            missing.append(f"{library} {installed_version(library)}: {part}{error}")
    if missing:
        raise LibraryInternalsMissing(
            "the live stream relies on parts of these libraries that the installed "
            "versions lack (see pulseboard/stream/internals.py); install the versions "
            "pinned in requirements.txt:\n  " + "\n  ".join(missing)
        )


def installed_version(library: str) -> str:
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def probes() -> list[tuple[str, str, Callable[[], object]]]:
    """``(library, part, probe)``: the probe returns true when the part is there."""
    engineio_lib, socketio_lib = "python-engineio", "python-socketio"
    server = socketio.Server(async_mode="threading")
    eio_socket = EngineIOSocket(server.eio, "internals-check")
    found = [
        (engineio_lib, "Server.sockets (a dict by sid)", lambda: type(server.eio.sockets) is dict),
        (engineio_lib, f"Server._async with {', '.join(DRIVER_KEYS)}", lambda: _drivers(server)),
        (engineio_lib, "Socket.queue, of the driver's queue type", lambda: _queue_of(server)),
        (
            engineio_lib,
            "Socket.upgrading, .closing, .closed, .last_ping",
            lambda: _flags(eio_socket),
        ),
        (engineio_lib, "Socket.send(pkt)", lambda: _takes(EngineIOSocket.send, "pkt")),
        (
            engineio_lib,
            "Socket.close(wait, abort)",
            lambda: _takes(EngineIOSocket.close, "wait", "abort"),
        ),
        (
            engineio_lib,
            "Socket._send_ping, the task Socket.schedule_ping starts",
            lambda: callable(EngineIOSocket._send_ping)
            and _calls(EngineIOSocket.schedule_ping, "_send_ping"),
        ),
        (
            engineio_lib,
            "Socket._websocket_handler's steps (probe, upgrade, receive, close)",
            _handler_steps,
        ),
        (
            engineio_lib,
            "Socket.connected, .upgraded, .receive(pkt), Server.reason.TRANSPORT_CLOSE",
            lambda: isinstance(eio_socket.connected, bool)
            and isinstance(eio_socket.upgraded, bool)
            and _takes(EngineIOSocket.receive, "pkt")
            and bool(server.eio.reason.TRANSPORT_CLOSE),
        ),
        (
            engineio_lib,
            "Socket.queue, made by Server.create_queue from the driver table",
            lambda: _calls(BaseSocket.__init__, "create_queue")
            and _calls(server.eio.create_queue, "_async"),
        ),
        (
            engineio_lib,
            "Socket._websocket_handler, the handler Socket._upgrade_websocket gives the driver",
            lambda: callable(EngineIOSocket._websocket_handler)
            and _calls(EngineIOSocket._upgrade_websocket, "_websocket_handler"),
        ),
        (engineio_lib, "Packet.encode_cache, returned by Packet.encode()", _encode_cache_holds),
        (socketio_lib, "Server.packet_class", lambda: callable(server.packet_class)),
        (
            socketio_lib,
            "Server.manager_initialized, set where Server._handle_eio_connect starts the manager",
            lambda: server.manager_initialized is False
            and _calls(socketio.Server._handle_eio_connect, "manager_initialized"),
        ),
        (
            socketio_lib,
            "KombuManager._queue, called by KombuManager._listen",
            lambda: _defines(socketio.KombuManager, "_queue")
            and _calls(socketio.KombuManager._listen, "_queue"),
        ),
        (
            socketio_lib,
            "KombuManager._publish, called by PubSubManager.emit",
            lambda: _defines(socketio.KombuManager, "_publish")
            and _calls(socketio.PubSubManager.emit, "_publish"),
        ),
        (
            socketio_lib,
            "KombuManager._exchange, .publisher_connection, .producer_options",
            lambda: _defines(socketio.KombuManager, "_exchange")
            and _calls(socketio.KombuManager.__init__, "publisher_connection", "producer_options"),
        ),
        ("gunicorn", f"environ[{GUNICORN_SOCKET!r}]", _gunicorn_sets_socket),
        ("gunicorn", f"environ[{GUNICORN_EARLY_HINTS!r}]", _gunicorn_sets_early_hints),
        ("gevent", "gevent.socket.socket._sock", _gevent_socket_has_raw),
        ("simple-websocket", "Server.connected and Server.sock", _simple_websocket_parts),
        (
            "kombu",
            "file-system Channel._put, ._get (name-ordered '<sortable>.<queue>.msg' files)",
            _folder_transport_parts,
        ),
    ]
    for mode in ASYNC_MODES:
        found.append(
            (engineio_lib, f"the {mode} driver's queue", lambda mode=mode: _queue_type(mode))
        )
    return found


def _handler_steps() -> bool:
    """The handler still takes the steps ``LeanWebSocket`` takes in its place."""
    handler = EngineIOSocket._websocket_handler
    return (
        _calls(handler, "connected", "upgrading", "upgraded", "receive", "close", "put", "join")
        and _calls(handler, "PING", "PONG", "NOOP", "UPGRADE", "TRANSPORT_CLOSE")
        and _calls(handler, "UnknownPacketError", "SocketIsClosedError")
        and PROBE in _constants(handler.__code__.co_consts)
        and hasattr(engineio_exceptions, "UnknownPacketError")
        and hasattr(engineio_exceptions, "SocketIsClosedError")
    )


def _gunicorn_sets_early_hints() -> bool:
    from gunicorn.http import wsgi

    return GUNICORN_EARLY_HINTS in _constants(wsgi.create.__code__.co_consts)


def _drivers(server) -> bool:
    return all(key in server.eio._async for key in DRIVER_KEYS)


def _queue_of(server) -> bool:
    return isinstance(EngineIOSocket(server.eio, "queue-check").queue, server.eio._async["queue"])


def _flags(eio_socket) -> bool:
    return all(
        isinstance(getattr(eio_socket, name), bool) for name in ("upgrading", "closing", "closed")
    ) and isinstance(eio_socket.last_ping, float)


def _queue_type(mode: str) -> bool:
    """The driver's queue has the methods used here and a deque behind it."""
    driver = importlib.import_module(f"engineio.async_drivers.{mode}")._async
    queue = driver["queue"]()
    methods = all(callable(getattr(queue, name)) for name in QUEUE_METHODS)
    return methods and isinstance(queue.queue, deque)


def _encode_cache_holds() -> bool:
    pkt = eio_packet.Packet(eio_packet.MESSAGE, "x")
    cache_encoded(pkt, "4cached")
    return pkt.encode() == "4cached"


def _gunicorn_sets_socket() -> bool:
    from gunicorn.http import wsgi

    return GUNICORN_SOCKET in _constants(wsgi.default_environ.__code__.co_consts)


def _gevent_socket_has_raw() -> bool:
    sock = gevent.socket.socket()
    try:
        return isinstance(sock._sock, _socket.socket)  # the C socket, whatever is patched
    finally:
        sock.close()


def _simple_websocket_parts() -> bool:
    from simple_websocket.ws import Base

    return _calls(Base.__init__, "connected", "sock") and _calls(SimpleWebSocketWSGI.__call__, "ws")


def _defines(cls: type, name: str) -> bool:
    """Whether ``cls`` itself (not a base) defines the method ``name``."""
    return callable(vars(cls).get(name))


def _calls(function, *names: str) -> bool:
    """Whether ``function``'s own code names each of ``names`` (an attribute or method)."""
    return set(names) <= set(inspect.unwrap(function).__code__.co_names)


def _constants(values: tuple) -> set:
    """The constants of a code object, those in tuples (a dict literal's keys) too."""
    found = set()
    for value in values:
        found |= _constants(value) if isinstance(value, tuple) else {value}
    return found


def _takes(function, *parameters: str) -> bool:
    return set(parameters) <= set(inspect.signature(function).parameters)
