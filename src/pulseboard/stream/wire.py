"""The WebSocket side of the stream: lean per connection, and one frame for many sockets.

Two things Engine.IO's stock WebSocket path does per connection that a
server holding thousands of sockets should not:

* It agrees to the permessage-deflate compression clients offer, and so
  compresses each message again for every socket, with a zlib context of a
  few hundred KB per connection.  It is declined here unless
  ``STREAM_WS_COMPRESSION`` asks for it.
* It frames every message again for every socket.  A round of delivery hands
  the same packet to hundreds of sockets; without compression a server's text
  frame is the same bytes for all of them, so it is built once
  (``SharedPacket``/``WireText``) and each socket's writer sends those bytes.
* Under gevent it keeps, per connection, the request's greenlet (parked deep
  in gunicorn and the WSGI stack, holding gunicorn's request objects), a
  reader greenlet, a writer greenlet, a full wsproto connection with its
  handshake state, and a greenlet that sleeps until the next ping.
  ``LeanWebSocket`` answers the handshake itself, lets the request end, and
  reads the connection on its own descriptor only when bytes arrive, with
  wsproto's frame parser alone, taking Engine.IO's handler's steps itself;
  ``Pinger`` sends every socket's pings from one greenlet, and Engine.IO's
  writer is an ``IdleWriter``, a greenlet only while packets wait in the
  queue.  An idle connection is then a watcher and a few objects: no greenlet.

Anything that is not gunicorn's gevent worker, or that asks for compression
(which ``LeanWebSocket`` does not speak), keeps the stock path, framed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import socket
import struct
import threading
import time
from collections import deque

import gevent
from engineio import packet as eio_packet
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode, ParseFailed

from .idle_writer import IdleWriter
from .internals import (
    WakingQueue,
    answer_probe,
    cache_encoded,
    close_after_websocket,
    finish_upgrade,
    forget_server_socket,
    gunicorn_socket,
    has_simple_websocket,
    is_ping_task,
    nonblocking_socket,
    open_websocket,
    queue_is_empty,
    receive_message,
    send_frame,
    send_ping_now,
    set_websocket_driver,
    socket_of_handler,
    websocket_driver,
)

# RFC 6455 1.3: the GUID appended to the client's key for Sec-WebSocket-Accept.
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RECEIVE_BYTES = 4096
# libev's readiness for reading, as gevent's loop.io() takes it.
READ = 1
# Where a LeanWebSocket is in Engine.IO's steps: an upgrade's probe expected, then its
# upgrade packet; or open, each message handed to the Engine.IO socket.
PROBING, UPGRADING, OPEN = "probing", "upgrading", "open"

log = logging.getLogger(__name__)


def lean_websocket(eio_sid: str) -> LeanWebSocket | None:
    """The ``LeanWebSocket`` serving an Engine.IO connection; None when the connection is
    on long-polling or the stock WebSocket path."""
    return serving.get(eio_sid)


class WireText(str):
    """An encoded Engine.IO packet that knows its WebSocket text frame."""

    __slots__ = ("_frame",)

    @property
    def websocket_frame(self) -> bytes:
        try:
            return self._frame
        except AttributeError:
            self._frame = text_frame(self.encode())
            return self._frame


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (RFC 6455 5.2), as a server sends it."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class SharedPacket(eio_packet.Packet):
    """An Engine.IO message meant for many sockets."""

    def __init__(self, data: str):
        super().__init__(eio_packet.MESSAGE, data)

    def encode(self, b64: bool = False):
        encoded = super().encode(b64)
        if type(encoded) is str:
            encoded = WireText(encoded)
            cache_encoded(self, encoded)
        return encoded


def remainder_packet(data: bytes) -> eio_packet.Packet:
    """A packet that, written to a WebSocket, sends these bytes (the rest of a frame)."""
    # Not empty: Engine.IO's Packet.encode() returns its cache only when that is
    # truthy.  An empty one is encoded again as an empty message ("4"), written in
    # the middle of the frame, and the frame's rest is never sent.
    text = WireText("(the rest of a frame)")
    text._frame = data
    pkt = eio_packet.Packet(eio_packet.MESSAGE, "")
    cache_encoded(pkt, text)
    return pkt


def framed_websocket(base: type, compression: bool) -> type:
    """``base`` (the async driver's WebSocket wrapper) sending ready frames as they are
    when it runs on simple-websocket, and declining compression unless ``compression``."""
    writes_frames = has_simple_websocket(base)

    class FramedWebSocket(base):
        def __call__(self, environ, start_response):
            if not compression:
                # The client's offer of extensions, gone: the handshake agrees to none.
                environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
            return super().__call__(environ, start_response)

        def send(self, message):
            if not writes_frames or type(message) is not WireText:
                return super().send(message)
            send_frame(self, message.websocket_frame)

    FramedWebSocket.__name__ = FramedWebSocket.__qualname__ = f"Framed{base.__name__}"
    return FramedWebSocket


class LeanWebSocket:
    """Engine.IO's WebSocket transport for gunicorn's gevent worker, without compression.

    It answers the handshake and lets the request end.  From then on nothing waits
    on the connection: a watcher on its descriptor starts a short task when bytes
    arrive, which reads what is there, takes the steps Engine.IO's WebSocket handler
    would take for each message (the upgrade's probe and upgrade packet, then each
    packet handed to the Engine.IO socket), and ends.  Engine.IO's handler would
    instead block on the connection for its whole life: a parked greenlet, with its
    saved stack and a Python frame stack of its own, for every idle socket.
    Requests that did not come through gunicorn are passed to ``fallback`` (the
    stock wrapper), which Engine.IO drives through its handler.
    """

    fallback: type  # set by install()
    # Thousands live at once: no instance dict each.
    __slots__ = (
        "app",
        "connected",
        "eio_socket",
        "parts",
        "protocol",
        "raw",
        "server",
        "size",
        "sock",
        "stage",
        "watcher",
        "writer",
        "writing",
    )

    def __init__(self, handler, server):
        self.app = handler
        self.server = server
        self.connected = False

    def __call__(self, environ, start_response):
        sock = gunicorn_socket(environ)
        if sock is None:
            return self.fallback(self.app, self.server)(environ, start_response)
        key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
        upgrade = environ.get("HTTP_UPGRADE", "").lower()
        if upgrade != "websocket" or environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13" or not key:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"a WebSocket handshake (version 13) was expected"]
        accept = base64.b64encode(
            hashlib.sha1(key.encode() + WEBSOCKET_GUID, usedforsecurity=False).digest()
        )
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        # The connection lives on, on a descriptor of its own: the request's greenlet
        # (deep in gunicorn and the WSGI stack) and gunicorn's request objects are freed
        # as soon as this returns, and gunicorn closes only its own descriptor.
        self.sock = sock.dup()
        self.raw = nonblocking_socket(self.sock)  # its send() and recv() never wait
        self.protocol = FrameProtocol(client=False, extensions=[])
        self.parts: list = []
        self.size = 0
        self.writing = threading.Lock()  # gevent's, once patched: one writer at a time
        self.connected = True
        # What Engine.IO keeps of the handshake request need not hold gunicorn's reader.
        environ["wsgi.input"] = io.BytesIO()
        forget_server_socket(environ)
        self.eio_socket = socket_of_handler(self.app)
        self.app = None  # the handler is not called: its steps are taken here
        self.writer = None
        if open_websocket(self.eio_socket):
            self.stage = PROBING
        else:
            self._opened()
        serving[self.eio_socket.sid] = self  # delivery may write through us directly
        self.watcher = gevent.get_hub().loop.io(self.sock.fileno(), READ)
        self.watcher.start(self._readable)
        # The connection is ours from the handshake on: gunicorn must not answer it too.
        raise StopIteration()

    def _opened(self) -> None:
        """On WebSocket for good: Engine.IO's writer is an ``IdleWriter``."""
        self.stage = OPEN
        self.writer = IdleWriter(self.eio_socket, self, self.server.start_background_task)

    def _readable(self) -> None:
        # Called by the event loop, where nothing may block: the reading is a task.
        self.watcher.stop()
        self.server.start_background_task(self._read)

    def _read(self) -> None:
        """Act on every message that has arrived; then wait for more, or, once the
        connection is gone, end the socket as Engine.IO's handler does on its way out."""
        try:
            while self.connected:
                message = self._next_message()
                if message is not None:
                    if self._take(message):
                        continue
                    break  # as the handler's loop: what ends next closes the WebSocket
                if not self.connected:
                    break
                try:
                    data = self.raw.recv(RECEIVE_BYTES)
                except BlockingIOError:  # all read: the watcher wakes us for the next bytes
                    self.watcher.start(self._readable)
                    return
                except OSError:
                    data = b""
                if not data:
                    self.connected = False
                    break
                self.protocol.receive_bytes(data)
        except Exception:  # never leave the Engine.IO socket open on a dead connection
            log.exception("socket %s: reading failed", self.eio_socket.sid)
        self._gone()

    def _take(self, message) -> bool:
        """One message, as Engine.IO's handler takes it; False ends the connection."""
        if self.stage is OPEN:
            return receive_message(self.eio_socket, message)
        if self.stage is PROBING:
            self.stage = UPGRADING
            return answer_probe(self.eio_socket, message, self.send)
        if finish_upgrade(self.eio_socket, message):
            self._opened()
            return True
        return False

    def _gone(self) -> None:
        """The connection is over: end the Engine.IO socket's WebSocket (a failed upgrade
        leaves the socket on long-polling), then let go of the descriptor."""
        try:
            if self.stage is not OPEN:
                # Gone mid-upgrade (a proxy that lets the handshake through, then drops
                # the connection): as the handler, which reads the end as a wrong packet,
                # the upgrade fails and the socket goes on on long-polling.
                self._take(None)
            if self.writer is not None:  # its writer closes the WebSocket on the way
                close_after_websocket(self.eio_socket, self.writer)
        finally:
            self.connected = False
            serving.pop(self.eio_socket.sid, None)
            self.watcher.close()
            self.sock.close()

    def _next_message(self):
        try:
            for frame in self.protocol.received_frames():
                if frame.opcode is Opcode.PING:
                    self._write(self.protocol.pong(frame.payload))
                elif frame.opcode is Opcode.CLOSE:
                    code, reason = frame.payload
                    self._end(code, reason)
                    return None
                elif frame.opcode is not Opcode.PONG:
                    self.parts.append(frame.payload)
                    self.size += len(frame.payload)
                    if self.size > self.server.max_http_buffer_size:
                        self._end(CloseReason.MESSAGE_TOO_BIG, "message too big")
                        return None
                    if frame.message_finished:
                        parts, self.parts, self.size = self.parts, [], 0
                        empty = "" if isinstance(parts[0], str) else b""
                        return empty.join(parts)
        except ParseFailed as error:
            self._end(error.code, str(error))
        return None

    def send(self, message) -> None:
        if not self.connected:
            raise OSError("WebSocket closed")
        if type(message) is WireText:
            self._write(message.websocket_frame)
        else:
            self._write(self.protocol.send_data(message))

    def send_now(self, eio_socket, packets: list) -> list:
        """Write ready frames straight to the socket, without blocking; return the rest.

        Only when nothing else is waiting to be written (Engine.IO's queue empty,
        its writer idle), so the order of everything sent stays as queued.  What
        the kernel does not take at once (the client reads slowly) is returned,
        a partly written frame as a packet holding its remaining bytes, for
        Engine.IO's queue and writer to send in order.
        """
        if not self.connected or self.writing.locked() or not queue_is_empty(eio_socket):
            return packets
        for index, pkt in enumerate(packets):
            encoded = pkt.encode()
            if type(encoded) is not WireText:
                return packets[index:]
            frame = encoded.websocket_frame
            try:
                sent = self.raw.send(frame)
            except OSError:  # full (BlockingIOError) or broken: the writer finds out
                return packets[index:]
            if sent < len(frame):
                return [remainder_packet(frame[sent:]), *packets[index + 1 :]]
        return []

    def close(self) -> None:
        if self.connected:
            self._end(CloseReason.NORMAL_CLOSURE, None)

    def _end(self, code, reason) -> None:
        """Send a close frame (once), then stop reading: the descriptor's shutdown wakes
        the watcher, and the reading task finds the connection over."""
        was_connected, self.connected = self.connected, False
        if was_connected:
            try:
                self._write(self.protocol.close(code, reason))
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _write(self, data) -> None:
        with self.writing:
            # One send() usually takes a whole frame; gevent's sendall() would first ask
            # the kernel for the buffer size, a system call per message.
            sent = self.sock.send(data)
            if sent < len(data):
                self.sock.sendall(memoryview(data)[sent:])


# Engine.IO sid -> the LeanWebSocket serving it, while it does.
serving: dict[str, LeanWebSocket] = {}


class Pinger:
    """Engine.IO's pings for every socket of the process from one greenlet, not one each.

    Engine.IO schedules each socket's next ping as a background task that
    sleeps for the ping interval and then sends it: a sleeping greenlet per
    connection, all the time.  Here those tasks become entries in one queue,
    due in the order they were scheduled (the interval is the same for all),
    and one greenlet sends each ping when it is due, exactly as the task would
    have.  It runs while pings are pending and stops when none are.
    """

    def __init__(self, eio_server):
        self.server = eio_server
        self.due: deque = deque()  # (monotonic time, Engine.IO socket), oldest first
        self.running = False
        self._start_task = eio_server.start_background_task

    def start_background_task(self, target, *args, **kwargs):
        """The server's own, except that a socket's ping task joins the queue."""
        if not args and is_ping_task(target):
            return self.schedule(target.__self__)
        return self._start_task(target, *args, **kwargs)

    def schedule(self, socket) -> None:
        self.due.append((time.monotonic() + self.server.ping_interval, socket))
        if not self.running:
            self.running = True
            self._start_task(self.run)

    def run(self) -> None:
        try:
            while self.due:
                when, socket = self.due[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self.server.sleep(wait)
                    continue
                self.due.popleft()
                send_ping_now(socket)
        finally:
            self.running = False


def install(eio_server, compression: bool = False) -> None:
    """Framed sends on this Engine.IO server; under gevent without compression, also
    ``LeanWebSocket``, ``Pinger`` and ``IdleWriter``.

    Engine.IO keeps its driver table per process; this server gets a copy.
    """
    framed = framed_websocket(websocket_driver(eio_server), compression)
    if eio_server.async_mode == "gevent" and not compression:
        lean = type("LeanWebSocket", (LeanWebSocket,), {"fallback": framed, "__slots__": ()})
        set_websocket_driver(eio_server, lean, queue=WakingQueue)
        eio_server.start_background_task = Pinger(eio_server).start_background_task
    else:
        set_websocket_driver(eio_server, framed)
