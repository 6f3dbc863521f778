"""A reverse proxy on loopback that passes HTTP and spoils WebSocket upgrades, as
strict corporate proxies and some mobile carriers do.

``refuse``: every ``Upgrade: websocket`` request gets 403.  ``drop``: the upgrade
goes through, then the proxy silently closes the upgraded connection.  ``pass``:
nothing is spoiled (the control).  Ordinary requests, long-polling included, are
relayed byte for byte.  Set ``upstream_port`` before the first request.

With ``certfile``/``keyfile`` the proxy speaks TLS to the browser, as a
TLS-inspecting corporate proxy does: either directly (``https://localhost:<port>``)
or inside the tunnel a browser opens with ``CONNECT`` when told to use it as its
HTTP proxy, so the page keeps the site's own origin.  With ``upstream_tls`` it
forwards over TLS (SNI ``localhost``, any certificate: the test site's own).
Without these it behaves exactly as before.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading

HEAD_END = b"\r\n\r\n"
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TUNNEL_OPEN = b"HTTP/1.1 200 Connection established\r\n\r\n"
TLS_HANDSHAKE = b"\x16"


class UpgradeSpoilingProxy:
    def __init__(
        self,
        mode: str,
        upstream_port: int | None = None,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        upstream_tls: bool = False,
    ):
        assert mode in ("refuse", "drop", "pass")
        self.upstream_port, self.mode = upstream_port, mode
        self.tls_server = None
        if certfile:
            self.tls_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_server.load_cert_chain(certfile, keyfile)
        self.tls_client = None
        if upstream_tls:
            self.tls_client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.tls_client.check_hostname = False
            self.tls_client.verify_mode = ssl.CERT_NONE
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upgrades_spoiled = 0
        self.upgrades_seen = 0
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
            if self.tls_server is not None:
                with contextlib.suppress(OSError):
                    self._serve_tls(client)
                return
            head = self._read_head(client)
            if head is None:
                return
            self._forward(client, head)

    def _serve_tls(self, client: socket.socket) -> None:
        client.settimeout(30)
        if client.recv(1, socket.MSG_PEEK) != TLS_HANDSHAKE:  # a CONNECT: open the tunnel
            head = self._read_head(client)
            if head is None or not head.startswith(b"CONNECT "):
                return
            client.sendall(TUNNEL_OPEN)
        secure = self.tls_server.wrap_socket(client, server_side=True)
        secure.settimeout(None)
        with contextlib.closing(secure):
            head = self._read_head(secure)
            if head is not None:
                self._forward(secure, head)

    def _connect_upstream(self) -> socket.socket:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        if self.tls_client is None:
            return upstream
        return self.tls_client.wrap_socket(upstream, server_hostname="localhost")

    def _forward(self, client: socket.socket, head: bytes) -> None:
        upgrade = b"upgrade: websocket" in head.lower()
        self.upgrades_seen += upgrade
        if upgrade and self.mode == "refuse":
            self.upgrades_spoiled += 1
            client.sendall(FORBIDDEN)
            return
        upstream = self._connect_upstream()
        with contextlib.closing(upstream):
            upstream.sendall(head)
            if upgrade and self.mode == "drop":  # let the handshake through, then go
                self.upgrades_spoiled += 1
                client.sendall(self._read_head(upstream) or b"")
                return
            if isinstance(client, ssl.SSLSocket) or isinstance(upstream, ssl.SSLSocket):
                self._relay_both(client, upstream)
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

    @staticmethod
    def _relay_both(one: socket.socket, other: socket.socket) -> None:
        """Both directions from one thread: an SSL socket must not be read and written
        from two threads at once.  Reads never block (a TLS record that holds no data
        yet, a session ticket, must not stall the other direction)."""
        peer = {one: other, other: one}
        open_ends = [one, other]
        with contextlib.suppress(OSError):
            while open_ends:
                readable, _, _ = select.select(open_ends, [], [], 120)
                if not readable:
                    return
                for source in readable:
                    while source in open_ends:
                        source.setblocking(False)
                        try:
                            chunk = source.recv(65536)
                        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                            break
                        finally:
                            source.setblocking(True)
                        if not chunk:
                            open_ends.remove(source)
                            if isinstance(peer[source], ssl.SSLSocket):
                                return  # no half-close over TLS: the exchange is over
                            peer[source].shutdown(socket.SHUT_WR)
                            break
                        peer[source].sendall(chunk)
                        if not getattr(source, "pending", lambda: 0)():
                            break
