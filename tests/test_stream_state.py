"""The stream's pure parts, without a server: what a socket is sent from a round,
its message budget, and the one greenlet that sends every socket's pings."""

from __future__ import annotations

import engineio
import pytest

from pulseboard.stream import wire
from pulseboard.stream.state import CLIENT_BURST, SocketState, TokenBucket, TopicFilter


def event(seq: int, type_: str = "tick", key: str | None = "ACME") -> dict:
    return {"seq": seq, "id": f"e{seq}", "topic": "t", "type": type_, "key": key, "payload": {}}


@pytest.fixture
def state():
    return SocketState(user_id=1, is_admin=False, session_key="k", eio_sid="e")


def test_a_socket_that_takes_the_topic_whole_gets_the_round_itself(state):
    state.filters["t"] = TopicFilter()
    round_ = [event(1), event(2)]
    assert state.select("t", round_) is round_  # shared, so it is encoded once for all


def test_filters_choose_by_type_and_key(state):
    state.filters["t"] = TopicFilter(types=frozenset({"tick"}), keys=frozenset({"ACME"}))
    chosen = state.select("t", [event(1), event(2, type_="trade"), event(3, key="XYZ"), event(4)])
    assert [e["seq"] for e in chosen] == [1, 4]


def test_what_a_socket_had_is_never_sent_again(state):
    state.filters["t"] = TopicFilter()
    state.select("t", [event(1), event(2)])
    assert [e["seq"] for e in state.select("t", [event(2), event(3)])] == [3]


def test_a_topic_the_socket_does_not_hold_gives_nothing(state):
    assert state.select("t", [event(1)]) == []


def test_the_budget_allows_a_burst_then_refuses_then_refills(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("pulseboard.stream.state.time.monotonic", lambda: now[0])
    bucket = TokenBucket(stamp=now[0])
    assert all(bucket.take() for _ in range(CLIENT_BURST))
    assert bucket.take() is False and bucket.refused == 1
    now[0] += 0.5  # five tokens at ten a second
    assert sum(bucket.take() for _ in range(10)) == 5


def test_the_pinger_sends_each_due_ping_from_one_task_in_order(monkeypatch):
    server = engineio.Server(async_mode="threading", ping_interval=0)
    sent, started = [], []
    monkeypatch.setattr(wire, "send_ping_now", sent.append)
    pinger = wire.Pinger(server)
    pinger._start_task = lambda target, *args: started.append(target)
    sockets = [object(), object(), object()]
    for socket in sockets:
        pinger.schedule(socket)
    assert len(started) == 1  # one task, however many sockets
    started[0]()
    assert sent == sockets and not pinger.due and not pinger.running
