"""One bad event, or one broken socket, never costs anyone else their events.

An event the encoder cannot take (here nested far deeper than any entry now
accepts, as one stored before the depth limit could be) is left out of its
round; the events beside it still go to every socket.  A socket whose send
fails loses its own round, and the others in the room still get theirs.
These run the real delivery manager on a real Socket.IO server with real
Engine.IO sockets, without a network: the round's packets are read off each
socket's own queue.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import engineio
import pytest
import socketio
from sqlalchemy import create_engine, insert, select

from pulseboard.models import Event
from pulseboard.stream.delivery import LocalStreamManager
from pulseboard.stream.names import NAMESPACE
from pulseboard.stream.state import SocketState, TopicFilter, registry

from ..pipeline import wait_for
from ..streaming import StreamClient, embedded_site, ingest, signed_in_session

ROOM = "topic:market.ticks"


def event(seq: int, payload: dict | None = None) -> dict:
    return {
        "seq": seq,
        "id": f"e{seq}",
        "topic": "market.ticks",
        "type": "tick",
        "timestamp": "2026-12-01T00:00:00.000Z",
        "payload": payload if payload is not None else {"n": seq},
    }


def far_too_deep(levels: int = 5000) -> dict:
    payload: dict = {}
    for _ in range(levels):
        payload = {"a": payload}
    return payload


class BrokenSocket(engineio.socket.Socket):
    def send(self, pkt):
        raise OSError("connection reset")


@pytest.fixture
def room():
    """A server whose room holds sockets added with ``join(kind)``; their sids, to clean up."""
    server = socketio.Server(client_manager=LocalStreamManager(), async_mode="threading")
    joined = []

    def join(kind=engineio.socket.Socket) -> engineio.socket.Socket:
        eio_sid = f"eio-{len(joined)}"
        eio_socket = server.eio.sockets[eio_sid] = kind(server.eio, eio_sid)
        sid = server.manager.connect(eio_sid, NAMESPACE)
        server.manager.enter_room(sid, NAMESPACE, ROOM)
        state = SocketState(user_id=1, is_admin=False, session_key="k", eio_sid=eio_sid)
        state.filters["market.ticks"] = TopicFilter()
        registry.add(sid, state)
        joined.append(sid)
        return eio_socket

    yield server.manager, join
    for sid in joined:
        registry.remove(sid)


def delivered(eio_socket) -> list[int]:
    """The seqs of the events messages waiting on an Engine.IO socket's queue."""
    seqs = []
    while not eio_socket.queue.empty():
        encoded = eio_socket.queue.get_nowait().encode()
        name, batch = json.loads(encoded[len("42/stream,") :])
        assert name == "events"
        seqs += [item["seq"] for item in batch]
    return seqs


def test_an_event_that_cannot_be_encoded_is_left_out_and_the_rest_delivered(room):
    manager, join = room
    sockets = [join(), join()]
    manager.deliver_round(ROOM, [event(1), event(2, far_too_deep()), event(3)])
    assert [delivered(s) for s in sockets] == [[1, 3], [1, 3]]


def test_a_socket_that_fails_loses_only_its_own_round(room):
    manager, join = room
    join(BrokenSocket)
    healthy = join()
    manager.deliver_round(ROOM, [event(1), event(2)])
    assert delivered(healthy) == [1, 2]


def stored_seq(engine, event_id: str) -> int:
    """The seq of an accepted event, once the consumer has stored it."""

    def seq():
        with engine.connect() as connection:
            return connection.scalar(select(Event.seq).where(Event.event_id == event_id))

    wait_for(seq, 10, message=f"event {event_id} stored")
    return seq()


def test_a_replay_over_an_unreadable_stored_event_still_answers_with_the_rest(tmp_path, clients):
    with embedded_site(tmp_path) as site:
        url, token = site["url"], site["token"]
        tick = {"topic": "market.ticks", "type": "tick", "payload": {}}
        engine = create_engine(site["db"])
        since = stored_seq(engine, ingest(url, token, [tick])[0])
        # Written straight into the log, as one stored before the depth limit could be.
        with engine.begin() as connection:
            connection.execute(
                insert(Event).values(
                    event_id="too-deep",
                    topic="market.ticks",
                    type="tick",
                    timestamp=datetime.now(UTC),
                    payload='{"a":' + "[" * 5000 + "]" * 5000 + "}",
                    stored_at=datetime.now(UTC),
                )
            )
        [after] = ingest(url, token, [tick])
        stored_seq(engine, after)
        engine.dispose()
        bob = StreamClient(url, signed_in_session(url, "bob@example.com"))
        clients.append(bob)
        ack = bob.call("subscribe", {"topics": ["market.ticks"], "since": since})
        assert ack["ok"] and ack["replayed"] == 1, ack
        assert [event["id"] for event in bob.wait_for_events(1)] == [after]
