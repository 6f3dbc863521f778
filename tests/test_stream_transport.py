"""The WebSocket transport under gunicorn's gevent worker, at the frame level.

The stream answers WebSocket handshakes and reads frames itself (stream/wire.py):
these tests speak raw WebSocket to it, and check what batching must keep:
every event once, in ``seq`` order, whatever the load.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time

import pytest
import websocket

from pulseboard.stream.wire import remainder_packet

from .streaming import StreamClient, embedded_site, ingest, signed_in_session

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(tmp_path_factory.mktemp("transport")) as site:
        yield site


def handshake(url: str, *extra: str) -> tuple[str, socket.socket]:
    """A hand-written WebSocket upgrade request; the response head and the open socket."""
    port = int(url.rsplit(":", 1)[1])
    key = base64.b64encode(b"0123456789abcdef").decode()
    lines = [
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Origin: {url}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return head.decode("latin-1"), sock


def expected_accept() -> str:
    key = base64.b64encode(b"0123456789abcdef").decode()
    digest = hashlib.sha1((key + GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def open_engineio(url: str) -> websocket.WebSocket:
    port = url.rsplit(":", 1)[1]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", origin=url, timeout=5
    )
    assert ws.recv().startswith("0{")  # Engine.IO's open packet
    return ws


def close_code(ws: websocket.WebSocket) -> int:
    """The status code of the next frame, which must be a close frame."""
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    return int.from_bytes(frame.data[:2], "big")


def test_the_handshake_is_answered_and_compression_declined(site):
    head, sock = handshake(
        site["url"], "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    )
    with sock:
        status, *headers = head.strip().split("\r\n")
        assert status == "HTTP/1.1 101 Switching Protocols"
        fields = {name.lower(): value for name, value in (h.split(": ", 1) for h in headers)}
        assert fields["sec-websocket-accept"] == expected_accept()
        assert "sec-websocket-extensions" not in fields
        first = sock.recv(2)
        assert first[0] == 0x81  # a final text frame, unmasked, uncompressed (no RSV1)
        length = first[1]
        assert sock.recv(length, socket.MSG_WAITALL).startswith(b"0{")


def test_a_handshake_without_a_key_is_refused(site):
    port = site["url"].rsplit(":", 1)[1]
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    with sock:
        sock.sendall(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Origin: {site['url']}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert sock.recv(200).startswith(b"HTTP/1.1 400")


def test_pings_get_pongs_and_a_close_is_answered(site):
    ws = open_engineio(site["url"])
    ws.ping("are you there")
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert (opcode, frame.data) == (websocket.ABNF.OPCODE_PONG, b"are you there")
    ws.send_close(websocket.STATUS_NORMAL)
    assert close_code(ws) == websocket.STATUS_NORMAL
    ws.shutdown()


def test_a_message_over_the_size_limit_is_closed_with_1009(site):
    ws = open_engineio(site["url"])
    ws.send("4" + "x" * 20_000)  # STREAM_MAX_MESSAGE_BYTES is 16 KiB
    assert close_code(ws) == websocket.STATUS_MESSAGE_TOO_BIG
    ws.shutdown()


def test_fragmented_messages_are_put_back_together(site):
    ws = open_engineio(site["url"])
    ws.send_frame(websocket.ABNF(0, 0, 0, 0, websocket.ABNF.OPCODE_TEXT, 1, "40/str"))
    ws.send_frame(websocket.ABNF(1, 0, 0, 0, websocket.ABNF.OPCODE_CONT, 1, "eam,"))
    answer = ws.recv()  # the namespace's answer to the whole message (no session here)
    assert answer.startswith("44/stream,")  # a connect error: refused, but understood
    ws.shutdown()


def test_the_rest_of_a_partly_written_frame_goes_out_as_those_bytes():
    # A frame the kernel took only part of: Engine.IO's writer encodes the packet
    # holding the rest, and must get those bytes, not an empty message in their place.
    assert remainder_packet(b"the rest").encode().websocket_frame == b"the rest"


def test_compression_when_asked_for(tmp_path):
    with embedded_site(tmp_path, STREAM_WS_COMPRESSION="true") as compressed:
        head, sock = handshake(compressed["url"], "Sec-WebSocket-Extensions: permessage-deflate")
        sock.close()
    assert head.startswith("HTTP/1.1 101")
    assert "sec-websocket-extensions: permessage-deflate" in head.lower()


def test_batches_under_load_arrive_once_each_in_seq_order(site):
    """Many small batches at once: delivery merges them, and loses or repeats nothing."""
    browser = signed_in_session(site["url"], "bob@example.com")
    listeners = [StreamClient(site["url"], browser) for _ in range(3)]
    try:
        for listener in listeners:
            assert listener.call("subscribe", {"topics": ["market.ticks"]})["ok"]
        sent: list[str] = []
        lock = threading.Lock()

        def post(start: int) -> None:
            ids = ingest(
                site["url"],
                site["token"],
                [
                    {"topic": "market.ticks", "type": "tick", "payload": {"n": n}}
                    for n in range(start, start + 5)
                ],
            )
            with lock:
                sent.extend(ids)

        threads = [threading.Thread(target=post, args=(n * 5,)) for n in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for listener in listeners:
            events = listener.wait_for_events(len(sent), timeout=20)
            seqs = [event["seq"] for event in events]
            assert seqs == sorted(set(seqs)), "out of order or repeated"
            assert sorted(event["id"] for event in events) == sorted(sent)
            assert listener.batches <= 40  # never more messages than batches sent
    finally:
        for listener in listeners:
            listener.close()
        browser.close()


def test_each_listener_gets_valid_json_batches(site):
    browser = signed_in_session(site["url"], "bob@example.com")
    listener = StreamClient(site["url"], browser)
    try:
        assert listener.call("subscribe", {"topics": ["market.ticks"]})["ok"]
        ids = ingest(
            site["url"],
            site["token"],
            [{"topic": "market.ticks", "type": "tick", "payload": {"text": "é ü ☃"}}],
        )
        (event,) = listener.wait_for_events(1)
        assert event["id"] == ids[0]
        assert json.dumps(event["payload"], ensure_ascii=False) == '{"text": "é ü ☃"}'
    finally:
        listener.close()
        browser.close()


def test_pings_come_on_time_and_a_silent_client_is_closed(tmp_path):
    """Engine.IO's pings, sent for every socket by one greenlet: on time, and enforced."""
    with embedded_site(tmp_path, STREAM_PING_INTERVAL="1", STREAM_PING_TIMEOUT="1") as quick:
        answering, silent = open_engineio(quick["url"]), open_engineio(quick["url"])
        try:
            started = time.monotonic()
            for _ in range(3):
                assert answering.recv() == "2"  # Engine.IO's ping
                answering.send("3")
            assert 2.5 < time.monotonic() - started < 5  # one a second
            # The silent one answered none: closed once interval and timeout have passed.
            received = []
            with pytest.raises(websocket.WebSocketConnectionClosedException):
                for _ in range(10):
                    received.append(silent.recv())
            assert received[0] == "2" and "3" not in received
            assert time.monotonic() - started < 6
        finally:
            answering.shutdown()
            silent.shutdown()


def test_a_namespace_connected_again_on_the_same_connection_is_still_signed_in(site):
    """What a connection keeps of its first request is cut down once it has connected
    (stream/kept_environ.py): its events, and a second connect on it, still work."""
    browser = signed_in_session(site["url"], "bob@example.com")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    port = site["url"].rsplit(":", 1)[1]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
        origin=site["url"],
        cookie=cookie,
        header=["User-Agent: " + "a browser's user agent " * 8, "Accept-Language: en"],
        timeout=5,
    )
    try:
        assert ws.recv().startswith("0{")
        for attempt in (1, 2):
            ws.send("40/stream,")
            assert next_socketio(ws).startswith("0/stream,{"), f"connect {attempt} refused"
            ws.send(f'42/stream,{attempt}["subscribe",{{"topics":["market.ticks"]}}]')
            answer = next_socketio(ws)
            assert answer.startswith(f"3/stream,{attempt}[")
            assert json.loads(answer.split(",", 1)[1][1:])[0]["ok"] is True
            if attempt == 1:
                ws.send("41/stream,")  # leave the namespace; the connection stays
        [event_id] = ingest(
            site["url"], site["token"], [{"topic": "market.ticks", "type": "tick", "payload": {}}]
        )
        while not (message := next_socketio(ws)).startswith('2/stream,["events"'):
            pass
        assert json.loads(message.split(",", 1)[1])[1][0]["id"] == event_id
    finally:
        ws.close()
        browser.close()


def next_socketio(ws: websocket.WebSocket) -> str:
    """The next Socket.IO packet (Engine.IO's "4" taken off), answering pings on the way."""
    while True:
        message = ws.recv()
        if message == "2":
            ws.send("3")
        elif message.startswith("4"):
            return message[1:]
