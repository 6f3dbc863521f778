"""The steps a WebSocket takes in Engine.IO, taken as messages arrive (stream/wire.py).

``LeanWebSocket`` does not run Engine.IO's WebSocket handler, which would block
on each idle connection for its whole life: it takes the handler's steps
(``stream/internals.py``) as each message arrives.  Here the installed Engine.IO's
own handler and those steps are given the same messages, and must leave the
socket, its queue, the WebSocket and the application in the same state.
"""

from __future__ import annotations

import engineio
import engineio.socket
import pytest

from pulseboard.stream import internals, wire
from pulseboard.stream.internals import LibraryInternalsMissing, check_internals
from pulseboard.stream.wire import LeanWebSocket


class Recorded:
    """What one run did: the handler's events, the WebSocket's traffic, the socket's end."""

    def __init__(self, upgrade: bool):
        self.server = engineio.Server(async_mode="threading", async_handlers=False)
        self.events: list = []
        self.server.on("message", lambda sid, data: self.events.append(("message", data)))
        self.server.on("disconnect", lambda sid, reason: self.events.append(("disconnect", reason)))
        self.socket = engineio.socket.Socket(self.server, "steps")
        self.server.sockets[self.socket.sid] = self.socket
        self.socket.connected = upgrade  # on long-polling already: the WebSocket is an upgrade
        self.sent: list = []
        self.closed = False

    def send(self, message) -> None:
        self.sent.append(message)

    def close(self) -> None:
        self.closed = True

    def join(self, timeout=None) -> None:
        pass

    def state(self) -> dict:
        s = self.socket
        return {
            "flags": (s.connected, s.upgrading, s.upgraded, s.closed),
            "queued": [p.encode() if p is not None else None for p in list(s.queue.queue)],
            "sent": self.sent,
            "events": self.events,
        }


def engineio_handler(messages: list, upgrade: bool) -> dict:
    """The installed Engine.IO's own handler, on a WebSocket that yields ``messages``."""
    run = Recorded(upgrade)
    incoming = iter([*messages, None])

    class WebSocket:
        wait = staticmethod(lambda: next(incoming))
        send = staticmethod(run.send)
        close = staticmethod(run.close)

    run.server.start_background_task = lambda target, *args: run  # the writer: joined only
    run.socket._websocket_handler(WebSocket())
    return run.state()


class Steps(LeanWebSocket):
    """A ``LeanWebSocket`` past its handshake, on no connection: what it writes is recorded."""

    def __init__(self, run: Recorded):
        self.server = run.server
        self.eio_socket = run.socket
        self.writer = None
        self.connected = True
        self.sock = self.watcher = Closable()
        self.run = run

    def send(self, message) -> None:
        self.run.send(message)


class Closable:
    def close(self) -> None:
        pass


def lean_steps(messages: list, upgrade: bool) -> dict:
    """What ``LeanWebSocket`` does with the same messages: each taken as ``_read`` takes
    it, until one ends the connection; then ``_gone``, as when the connection closes."""
    run = Recorded(upgrade)
    run.server.start_background_task = lambda target, *args: run  # as for the handler
    steps = Steps(run)
    if internals.open_websocket(run.socket):  # as __call__ does after the handshake
        steps.stage = wire.PROBING
    else:
        steps._opened()
    for message in messages:
        if not steps._take(message):
            break
    steps._gone()
    return run.state()


CASES = {
    "a WebSocket from the start": (False, ["4hello", "3", "4bye"]),
    "an upgrade": (True, ["2probe", "5", "4hello"]),
    "an upgrade without the probe": (True, ["2nope", "5", "4hello"]),
    "an upgrade whose connection closes before the probe": (True, []),
    "an upgrade whose connection closes after the probe": (True, ["2probe"]),
    "an upgrade without the upgrade packet": (True, ["2probe", "4early", "4hello"]),
    "a packet of no known type": (False, ["9what", "4after"]),
    "the client's close packet": (False, ["4hello", "1", "4after"]),
    "a packet that cannot be decoded": (False, ["4hello", "", "4after"]),
}


@pytest.mark.parametrize("case", CASES)
def test_the_steps_leave_everything_as_engineios_handler_does(case):
    upgrade, messages = CASES[case]
    try:
        expected = engineio_handler(messages, upgrade)
    except Exception as error:  # the handler lets a packet it cannot decode escape
        expected = type(error)
        assert case == "a packet that cannot be decoded"
    if expected is not None and not isinstance(expected, dict):
        # Engine.IO's handler dies there and leaves its socket open until the ping
        # timeout; the steps end the connection at once, as for any broken packet.
        found = lean_steps(messages, upgrade)
        assert found["flags"][3]  # closed
        assert found["events"] == [("message", "hello"), ("disconnect", "transport close")]
        return
    assert lean_steps(messages, upgrade) == expected


def test_an_engineio_handler_that_changed_its_steps_stops_the_start(monkeypatch):
    monkeypatch.setattr(internals, "PROBE", "sonde")
    with pytest.raises(LibraryInternalsMissing, match=r"python-engineio \S+: .*steps"):
        check_internals()
