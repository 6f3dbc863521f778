"""A reverse proxy on loopback that passes HTTP and spoils WebSocket upgrades, as
strict corporate proxies and some mobile carriers do.

``refuse``: every ``Upgrade: websocket`` request gets 403.  ``drop``: the upgrade
goes through, then the proxy silently closes the upgraded connection.  ``pass``:
nothing is spoiled (the control).  Ordinary requests, long-polling included, are
relayed byte for byte.  Set ``upstream_port`` before the first request.
"""

from __future__ import annotations

import contextlib
import socket
import threading

HEAD_END = b"\r\n\r\n"
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class UpgradeSpoilingProxy:
    def __init__(self, mode: str, upstream_port: int | None = None):
        assert mode in ("refuse", "drop", "pass")
        self.upstream_port, self.mode = upstream_port, mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upgrades_spoiled = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stopping = True
        self.listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.closing(client):
            head = self._read_head(client)
            if head is None:
                return
            upgrade = b"upgrade: websocket" in head.lower()
            if upgrade and self.mode == "refuse":
                self.upgrades_spoiled += 1
                client.sendall(FORBIDDEN)
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with contextlib.closing(upstream):
                upstream.sendall(head)
                if upgrade and self.mode == "drop":  # let the handshake through, then go
                    self.upgrades_spoiled += 1
                    client.sendall(self._read_head(upstream) or b"")
                    return
                pump = threading.Thread(target=self._relay, args=(upstream, client), daemon=True)
                pump.start()
                self._relay(client, upstream)
                pump.join(60)

    @staticmethod
    def _read_head(sock: socket.socket) -> bytes | None:
        data = b""
        while HEAD_END not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        return data

    @staticmethod
    def _relay(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
