"""GET /api/v1/stream: Server-Sent Events under real gunicorn, read as a client reads them."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from pulseboard.events.producer import Producer

from .pipeline import wait_for
from .servers import base_env, free_port, run_cli
from .sse_client import EventStream, is_marker, marker, read_token
from .streaming import embedded_site, ingest, rabbitmq_site, signed_in_session

MARKET = {"topic": "market.ticks", "type": "tick", "payload": {}}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sse")
    with embedded_site(
        tmp, STREAM_RIGHTS_CHECK_SECONDS="1", SSE_MAX_QUEUED_EVENTS="20", SSE_HEARTBEAT_SECONDS="1"
    ) as running:
        running["env"] = base_env(DATABASE_URL=running["db"], TMPDIR=str(tmp))
        yield running


def test_types_and_keys_filter_on_the_server(site):
    _, token = read_token(site, "market.*")
    stream = EventStream(site, "topics=market.ticks&types=tick&keys=AAPL", token=token)
    assert stream.response.status_code == 200
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-store"
    assert stream.response.headers["X-Accel-Buffering"] == "no"
    ingest(
        site["url"],
        site["token"],
        [
            {**MARKET, "key": "AAPL", "payload": {"n": 1}},
            {**MARKET, "key": "MSFT", "payload": {"n": 2}},
            {**MARKET, "type": "quote", "key": "AAPL", "payload": {"n": 3}},
            marker("filters", key="AAPL"),
        ],
    )
    events = stream.read_until(is_marker("filters"))
    stream.close()
    assert [(e["type"], e["key"], e["payload"]) for e in events] == [
        ("tick", "AAPL", {"n": 1}),
        ("tick", "AAPL", {"marker": "filters"}),
    ]


def test_topics_outside_the_acl_or_the_token_are_403_and_named(site):
    bob = signed_in_session(site["url"], "bob@example.com")
    refused = bob.get(f"{site['url']}/api/v1/stream?topics=market.ticks,audit", timeout=10)
    assert refused.status_code == 403 and "audit" in refused.json()["error"]
    _, token = read_token(site, "market.*")
    refused = requests.get(
        f"{site['url']}/api/v1/stream?topics=system.metrics",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert refused.status_code == 403 and "system.metrics" in refused.json()["error"]
    anonymous = requests.get(f"{site['url']}/api/v1/stream?topics=market.ticks", timeout=10)
    assert anonymous.status_code == 401


def test_a_signed_in_user_streams_with_the_session(site):
    ada = signed_in_session(site["url"], "ada@example.com")
    stream = EventStream(site, "topics=audit", browser=ada)
    assert stream.response.status_code == 200
    ingest(site["url"], site["token"], [marker("session", topic="audit")])
    assert stream.read_until(is_marker("session"))[-1]["topic"] == "audit"
    stream.close()


def test_a_read_token_cannot_ingest_and_a_producer_token_cannot_read(site):
    _, reader = read_token(site, "market.*")
    refused = requests.post(
        f"{site['url']}/api/v1/events",
        json=MARKET,
        headers={"Authorization": f"Bearer {reader}"},
        timeout=10,
    )
    assert refused.status_code == 403 and "read token" in refused.json()["error"]
    refused = requests.get(
        f"{site['url']}/api/v1/stream?topics=market.ticks",
        headers={"Authorization": f"Bearer {site['token']}"},
        timeout=10,
    )
    assert refused.status_code == 403 and "producer token" in refused.json()["error"]


def test_last_event_id_resumes_every_topic_with_nothing_lost_or_repeated(site):
    topics = ("market.ticks", "system.metrics")
    start = stored_seqs(site, topics)[-1] if stored_seqs(site, topics) else 0
    first = EventStream(site, "topics=market.ticks,system.metrics", token=read_token(site, "*")[1])
    producing = threading.Thread(target=produce, args=(site, topics, 40))
    producing.start()
    try:
        received = first.read_until(lambda _: len(first.events) >= 30)[:]
        resume_from = first.last_id
        first.close()  # cut mid-stream, while events flow
    finally:
        producing.join()
    assert "market.ticks=" in resume_from and "system.metrics=" in resume_from
    ingest(site["url"], site["token"], [marker("resume")])
    second = EventStream(
        site,
        "topics=market.ticks,system.metrics",
        token=read_token(site, "*")[1],
        last_event_id=resume_from,
    )
    received += second.read_until(is_marker("resume"))
    second.close()
    seqs = [event["seq"] for event in received]
    assert len(seqs) == len(set(seqs)), "an event came twice"
    assert sorted(seqs) == [seq for seq in stored_seqs(site, topics) if seq > start]


def produce(site, topics, rounds: int) -> None:
    for index in range(rounds):
        ingest(
            site["url"],
            site["token"],
            [{"topic": topic, "type": "t", "payload": {"i": index}} for topic in topics],
        )
        time.sleep(0.01)


def stored_seqs(site, topics) -> list[int]:
    path = urlsplit(site["db"]).path.lstrip("/")
    with sqlite3.connect(f"/{path}" if not path.startswith("/") else path) as connection:
        marks = ",".join("?" * len(topics))
        rows = connection.execute(
            f"SELECT seq FROM events WHERE topic IN ({marks}) ORDER BY seq",  # noqa: S608
            topics,
        )
        return [seq for (seq,) in rows]


def test_revoking_a_read_token_ends_its_open_stream(site):
    token_id, token = read_token(site, "market.*")
    stream = EventStream(site, "topics=market.ticks", token=token)
    ingest(site["url"], site["token"], [marker("before revoke")])
    stream.read_until(is_marker("before revoke"))
    assert run_cli("tokens", "revoke", str(token_id), env=site["env"]).returncode == 0
    started = time.monotonic()
    assert stream.next_event() is None  # the server ends the stream
    assert time.monotonic() - started < 5


def test_a_client_that_stops_reading_is_dropped_and_others_are_served(site):
    _, token = read_token(site, "market.*")
    stalled = stalled_client(site, token)
    payload = {"blob": "x" * 40_000}
    for _ in range(30):  # about 12 MB: more than the socket buffers between us hold
        ingest(site["url"], site["token"], [{**MARKET, "payload": payload}] * 10)
    wait_for(
        lambda: "unread; closing it" in Path(site["log"]).read_text(),
        10,
        message="the stalled stream to be closed",
    )
    stalled.settimeout(10)
    while stalled.recv(1 << 20):  # what was in flight, then the end
        pass
    stalled.close()
    healthy = EventStream(site, "topics=market.ticks", token=token)
    ingest(site["url"], site["token"], [marker("after the stalled one")])
    healthy.read_until(is_marker("after the stalled one"))
    healthy.close()


def stalled_client(site, token: str) -> socket.socket:
    """A client that sends its request, reads the headers, and then stops reading."""
    address = urlsplit(site["url"])
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect((address.hostname, address.port))
    client.sendall(
        f"GET /api/v1/stream?topics=market.ticks HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    assert client.recv(4096).startswith(b"HTTP/1.1 200")
    return client


def test_disabling_the_user_ends_the_session_stream(site):
    # Last: bob stays disabled.
    bob = signed_in_session(site["url"], "bob@example.com")
    stream = EventStream(site, "topics=market.ticks", browser=bob)
    ingest(site["url"], site["token"], [marker("before disable")])
    stream.read_until(is_marker("before disable"))
    disabled = run_cli("users", "disable", "bob@example.com", env=site["env"])
    assert disabled.returncode == 0, disabled.stderr
    assert stream.next_event() is None


def test_the_first_stream_of_a_fresh_instance_on_rabbitmq_gets_live_events(
    tmp_path, rabbitmq_url, mysql_server
):
    """No socket has connected yet, so nothing else started the instance's listener.
    The hole repair is slowed down, so only the fan-out can bring the event."""
    ports = [free_port()]
    with rabbitmq_site(
        tmp_path, rabbitmq_url, mysql_server, ports, STREAM_REPAIR_SECONDS="3600"
    ) as found:
        site = {"url": found["urls"][0], "env": found["env"]}
        _, token = read_token(site, "market.*")
        stream = EventStream(site, "topics=market.ticks", token=token)
        try:
            producer = Producer.from_config(found["config"])
            event_id = producer.publish("market.ticks", "tick", {"marker": "cold"})
            producer.close()
            assert stream.read_until(lambda event: True)[0]["id"] == event_id
        finally:
            stream.close()
