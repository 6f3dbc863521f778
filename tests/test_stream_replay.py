"""Replay pages through any backlog the log holds, with one position per topic.

A client that was away while thousands of events passed gets every one of
them when it subscribes with its positions, in pages (``STREAM_REPLAY_LIMIT``,
small here), in ``seq`` order, none twice, and then the live ones.  ``gap``
stays false: nothing was pruned.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests

from pulseboard.stream.state import HOLD_LIMIT, SocketState, TopicFilter

from .pipeline import EventLog, wait_for
from .streaming import StreamClient, embedded_site, ingest, signed_in_session

PAGE = 100
MAIN, SIDE = "market.ticks", "system.metrics"
TRANSPORTS = ["websocket", "polling"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(tmp_path_factory.mktemp("replay"), STREAM_REPLAY_LIMIT=str(PAGE)) as site:
        yield site


def publish(site, topic: str, count: int) -> list[str]:
    """``count`` events on ``topic``, ingested and stored; their ids in order."""
    ids = []
    for start in range(0, count, 500):
        batch = [
            {"topic": topic, "type": "tick", "payload": {"n": n}}
            for n in range(start, min(count, start + 500))
        ]
        ids += ingest(site["url"], site["token"], batch)
    log = EventLog(site["db"])
    try:
        wait_for(lambda: ids[-1] in {row[1] for row in log.rows()}, 20, message="stored")
    finally:
        log.close()
    return ids


def newest_seq(site) -> int:
    """Where a page that saw everything so far stands: the seq of a fresh marker event."""
    return _seq_of(site, publish(site, "market.ticks", 1)[0])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_backlog_many_pages_long_is_replayed_whole_and_in_order(site, clients, transport):
    since = newest_seq(site)
    missed = publish(site, "market.ticks", 7 * PAGE + 30)
    client = StreamClient(site["url"], signed_in_session(site["url"], "bob@example.com"), transport)
    clients.append(client)
    ack = client.call("subscribe", {"topics": ["market.ticks"], "since": since})
    assert ack["ok"] and ack["replayed"] == len(missed) and ack["gap"] is False, ack
    [live] = ingest(
        site["url"], site["token"], [{"topic": "market.ticks", "type": "t", "payload": {}}]
    )
    received = [event["id"] for event in client.wait_for_events(len(missed) + 1, timeout=30)]
    assert received == [*missed, live]
    seqs = [event["seq"] for event in client.events]
    assert seqs == sorted(set(seqs))


def test_each_topic_resumes_from_its_own_position(site, clients):
    """A page on two topics saw more of one than of the other: each catches up exactly."""
    start = newest_seq(site)
    ticks = publish(site, "market.ticks", 5)
    metrics = publish(site, "system.metrics", 5)
    # The page had seen 2 ticks and 4 metrics when it dropped.
    positions = {
        "market.ticks": _seq_of(site, ticks[1]),
        "system.metrics": _seq_of(site, metrics[3]),
    }
    assert min(positions.values()) > start
    client = StreamClient(site["url"], signed_in_session(site["url"], "bob@example.com"))
    clients.append(client)
    ack = client.call(
        "subscribe", {"topics": ["market.ticks", "system.metrics"], "since": positions}
    )
    assert ack["ok"] and ack["replayed"] == 4, ack
    received = {event["id"] for event in client.wait_for_events(4)}
    assert received == set(ticks[2:]) | {metrics[4]}


def test_positions_for_topics_not_asked_for_are_refused(site, clients):
    client = StreamClient(site["url"], signed_in_session(site["url"], "bob@example.com"))
    clients.append(client)
    ack = client.call("subscribe", {"topics": ["market.ticks"], "since": {"audit": 1}})
    assert ack == {"ok": False, "error": "since may give positions only for the topics asked for"}


def _seq_of(site, event_id: str) -> int:
    log = EventLog(site["db"])
    try:
        return next(seq for seq, found, *_ in log.rows() if found == event_id)
    finally:
        log.close()


def tick(seq: int, topic: str = "market.ticks") -> dict:
    return {"seq": seq, "id": f"e{seq}", "topic": topic, "type": "tick", "payload": {}}


def test_live_events_during_a_replay_are_held_then_released_after_it():
    state = SocketState(user_id=1, is_admin=False, session_key="k", eio_sid="e")
    state.filters["market.ticks"] = TopicFilter()
    state.begin_replay({"market.ticks": 10})
    assert state.select("market.ticks", [tick(14), tick(15)]) == []  # held, not sent
    assert state.advance_replay([tick(n) for n in (9, 11, 12, 13, 14)]) == [
        tick(11),
        tick(12),
        tick(13),
        tick(14),
    ]
    assert state.end_replay() == [tick(15)]  # 14 was in the page already
    assert state.select("market.ticks", [tick(16)]) == [tick(16)]


def test_past_the_hold_limit_held_events_are_let_go_and_read_again_from_the_log():
    state = SocketState(user_id=1, is_admin=False, session_key="k", eio_sid="e")
    state.filters["market.ticks"] = TopicFilter()
    state.begin_replay({"market.ticks": 1})
    state.select("market.ticks", [tick(n) for n in range(2, HOLD_LIMIT + 3)])
    assert state.take_overflow() is True
    assert state.take_overflow() is False  # told once
    assert state.end_replay() == []


def test_every_event_names_the_one_before_it_on_its_topic(site, clients):
    client = StreamClient(site["url"], signed_in_session(site["url"], "bob@example.com"))
    clients.append(client)
    assert client.call("subscribe", {"topics": [MAIN, SIDE]})["ok"]
    before = {MAIN: _seq_of(site, publish(site, MAIN, 1)[0])}
    client.wait_for_events(1)
    client.events.clear()
    ids = ingest(
        site["url"],
        site["token"],
        [{"topic": topic, "type": "t", "payload": {}} for topic in (MAIN, SIDE, MAIN, SIDE, MAIN)],
    )
    received = sorted(client.wait_for_events(5), key=lambda event: event["seq"])
    assert [event["id"] for event in received] == ids
    last = {MAIN: before[MAIN], SIDE: None}
    for event in received:
        if last[event["topic"]] is not None:
            assert event["prev"] == last[event["topic"]], event
        last[event["topic"]] = event["seq"]


def test_fill_returns_what_lies_between_two_events_of_a_subscribed_topic(site, clients):
    client = StreamClient(site["url"], signed_in_session(site["url"], "bob@example.com"))
    clients.append(client)
    assert client.call("subscribe", {"topics": [MAIN], "types": ["tick"]})["ok"]
    ids = publish(site, MAIN, 4)
    seqs = [_seq_of(site, event_id) for event_id in ids]
    ack = client.call("fill", {"topic": MAIN, "after": seqs[0], "before": seqs[3]})
    assert ack["ok"] and not ack["more"], ack
    assert [event["id"] for event in ack["events"]] == ids[1:3]
    refused = client.call("fill", {"topic": SIDE, "after": 0, "before": 5})
    assert refused == {"ok": False, "error": f"not subscribed to {SIDE!r}"}


def replay_pages(url: str) -> dict[str, float]:
    """``pulseboard_stream_replay_pages_total`` by source, from the instance's /metrics."""
    found = {"log": 0.0, "shared": 0.0}
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        match = re.match(r'pulseboard_stream_replay_pages_total\{source="(\w+)"\} (\S+)', line)
        if match:
            found[match[1]] = float(match[2])
    return found


def test_sockets_replaying_the_same_backlog_at_once_share_reads_and_lose_nothing(site, clients):
    """A reconnect storm in small: sockets that stopped at the same event subscribe at
    once while events keep coming. Each gets every event once; the log is read for
    fewer pages than the sockets took."""
    url = site["url"]
    since = newest_seq(site)
    missed = publish(site, MAIN, 4 * PAGE + 30)
    sockets = [
        StreamClient(url, signed_in_session(url, "bob@example.com"), TRANSPORTS[n % 2])
        for n in range(8)
    ]
    clients.extend(sockets)
    before = replay_pages(url)
    live: list[str] = []
    stop = threading.Event()

    def keep_publishing():  # stored while the replays run: they must arrive too, once
        while not stop.is_set():
            live.extend(ingest(url, site["token"], [{"topic": MAIN, "type": "t", "payload": {}}]))
            time.sleep(0.01)

    publisher = threading.Thread(target=keep_publishing, daemon=True)
    publisher.start()
    answers: list[dict] = []
    subscribing = [
        threading.Thread(
            target=lambda s=s: answers.append(
                s.call("subscribe", {"topics": [MAIN], "since": since})
            )
        )
        for s in sockets
    ]
    for thread in subscribing:
        thread.start()
    for thread in subscribing:
        thread.join(30)
    stop.set()
    publisher.join(10)
    assert len(answers) == len(sockets) and all(a["ok"] for a in answers), answers
    expected = missed + live
    for socket in sockets:
        wait_for(lambda s=socket: {e["id"] for e in s.events} >= set(expected), 20, message="all")
        received = [event["id"] for event in socket.events]
        assert len(received) == len(set(received)), "an event came twice"
        assert set(received) == set(expected)
    pages = replay_pages(url)
    read, shared = pages["log"] - before["log"], pages["shared"] - before["shared"]
    print(f"replay pages read {read:.0f}, shared {shared:.0f}")
    assert shared > 0, pages
    assert read < len(sockets) * 5, (read, shared)  # five pages each, were nothing shared


def test_a_replay_page_sees_what_was_stored_after_the_subscribe_looked_at_the_log(
    make_app, mysql_url
):
    """MySQL keeps one snapshot for a whole transaction (REPEATABLE READ). A subscribe
    asks for the log's latest seq before it joins its rooms; an event the consumer
    stores after that question but before the join reaches the socket neither live
    (it was not in the room yet) nor in the replay, if the replay read within the same
    transaction: a hole. A page read after the join must see everything stored
    before the read began."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from pulseboard.events import store
    from pulseboard.events.envelope import new_envelope
    from pulseboard.extensions import db
    from pulseboard.stream.replay import SharedReads

    app = make_app(DATABASE_URL=mysql_url)
    with app.app_context():
        store.store_batch(db.session, [new_envelope(MAIN, "tick", {"n": 0})])
        db.session.commit()
        db.session.remove()
        since = store.latest_seq(db.session)  # the subscribe's question: its snapshot
        consumer = create_engine(mysql_url)
        with Session(consumer) as session:  # the consumer stores one more meanwhile
            stored = store.store_batch(session, [new_envelope(MAIN, "tick", {"n": 1})])
            session.commit()
        consumer.dispose()
        read = SharedReads().page(since, [MAIN], limit=PAGE)
        assert [event["seq"] for event in read.events] == [stored[0].seq]
