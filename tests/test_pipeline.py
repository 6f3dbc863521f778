"""The event pipeline against the real RabbitMQ and MariaDB: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from kombu import Connection

from pulseboard.events.envelope import new_envelope
from pulseboard.events.topology import REASON_HEADER

from .pipeline import (
    ConsumerProcess,
    Pipeline,
    SocketIOListener,
    assert_log_holds_exactly,
    publish_stream,
    wait_for,
)
from .servers import private_rabbitmq, rabbitmqctl


@pytest.fixture
def pipeline(mysql_url, rabbitmq_url, tmp_path):
    pipeline = Pipeline(mysql_url, rabbitmq_url, tmp_path)
    yield pipeline
    pipeline.close()


def test_published_events_are_stored_emitted_then_acknowledged(pipeline):
    listener = SocketIOListener(pipeline.broker_url, pipeline.topology.socketio_channel)
    pipeline.start_consumer()
    producer = pipeline.producer()
    ids = [producer.publish("market.ticks", "tick", {"price": n}, key="ACME") for n in range(10)]
    ids += [producer.publish("system.metrics", "host", {"cpu_pct": n}) for n in range(5)]
    producer.close()

    wait_for(lambda: pipeline.log.count() == 15, 20, message="15 stored events")
    wait_for(lambda: len(listener.events()) == 15, 10, message="15 emitted events")
    listener.close()

    emitted = listener.events()
    assert [e["id"] for e in emitted if e["topic"] == "market.ticks"] == ids[:10]
    assert {e["id"] for e in emitted} == set(ids)
    rooms = {m["room"] for m in listener.messages}
    assert rooms <= {"topic:market.ticks", "topic:system.metrics"}
    assert all(m["namespace"] == "/stream" for m in listener.messages)
    stored = {event_id: seq for seq, event_id, _ in pipeline.log.rows()}
    assert all(e["seq"] == stored[e["id"]] for e in emitted)
    assert emitted[0]["key"] == "ACME" and emitted[0]["payload"] == {"price": 0}
    # Everything was acknowledged: nothing waits in the queue.
    with Connection(pipeline.broker_url) as connection:
        _, waiting, _ = pipeline.topology.queue.bind(connection.default_channel).queue_declare(
            passive=True
        )
    assert waiting == 0


BAD_MESSAGES = {
    "not JSON": (b"{not json", "not JSON"),
    "not UTF-8": (b'{"id": "\xff\xfe"}', "not UTF-8"),
    "missing fields": (json.dumps({"id": "x1", "topic": "market.ticks"}).encode(), "missing"),
    "bad topic": (
        json.dumps(
            {
                "id": "x2",
                "topic": "Market Ticks!",
                "type": "t",
                "timestamp": "2026-01-01T00:00:00Z",
                "payload": {},
            }
        ).encode(),
        "topic",
    ),
    "oversized": (
        json.dumps(
            {
                "id": "x3",
                "topic": "market.ticks",
                "type": "t",
                "timestamp": "2026-01-01T00:00:00Z",
                "payload": {"blob": "x" * 70_000},
            }
        ).encode(),
        "limit",
    ),
    "payload not an object": (
        json.dumps(
            {
                "id": "x4",
                "topic": "market.ticks",
                "type": "t",
                "timestamp": "2026-01-01T00:00:00Z",
                "payload": [1, 2],
            }
        ).encode(),
        "payload",
    ),
}


def test_malformed_messages_go_to_the_dead_letter_queue_with_the_reason(pipeline):
    consumer = pipeline.start_consumer()
    for body, _ in BAD_MESSAGES.values():
        pipeline.publish_raw(body)
    good = pipeline.producer()
    good_id = good.publish("market.ticks", "tick", {"price": 1})
    good.close()

    wait_for(lambda: pipeline.log.count() == 1, 20, message="the valid event stored")
    dead = []
    wait_for(
        lambda: dead.extend(pipeline.dead_letters()) or len(dead) >= len(BAD_MESSAGES),
        10,
        message="every bad message dead-lettered",
    )
    assert len(dead) == len(BAD_MESSAGES)
    reasons = [message.headers[REASON_HEADER] for message in dead]
    for (body, expected), reason, message in zip(BAD_MESSAGES.values(), reasons, dead, strict=True):
        assert expected in reason, (reason, expected)
        assert message.body == body  # the original bytes, untouched
    assert pipeline.log.rows()[0][1] == good_id
    assert consumer.process.poll() is None
    assert "dead-lettering message" in consumer.output()


def test_a_redelivered_or_republished_event_is_stored_once(pipeline):
    pipeline.start_consumer()
    envelope = new_envelope("market.ticks", "tick", {"price": 7})
    producer = pipeline.producer()
    producer.publish_envelopes([envelope, envelope, envelope])
    later = producer.publish("market.ticks", "tick", {"price": 8})
    producer.close()
    wait_for(lambda: later in {row[1] for row in pipeline.log.rows()}, 20, message="stored")
    assert [row[1] for row in pipeline.log.rows()] == [envelope.id, later]


def publish_in_background(pipeline: Pipeline, count: int, prefix: str, chunk: int | None = None):
    result: dict = {}

    def run():
        try:
            result["ids"] = publish_stream(pipeline, count, prefix, chunk)
        except Exception as error:  # reported by the test below
            result["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_rabbitmq_restarted_in_the_middle_of_a_5000_event_stream_loses_nothing(mysql_url, tmp_path):
    # A node of the test's own: restarting the shared broker would cut every other user.
    with private_rabbitmq() as (broker_url, node):
        pipeline = Pipeline(mysql_url, broker_url, tmp_path)
        try:
            consumer = pipeline.start_consumer()
            # About 1,000 events/s: the stream outlasts the restart.
            thread, result = publish_in_background(pipeline, 5000, "restart", chunk=50)
            wait_for(lambda: pipeline.log.count() >= 1000, 60, message="1000 events stored")

            rabbitmqctl(node, "stop_app")
            assert (
                pipeline.log.count() < 5000
            ), "the stream ended before the restart; nothing was tested"
            time.sleep(1)
            rabbitmqctl(node, "start_app")

            thread.join(180)
            assert "error" not in result, result.get("error")
            wait_for(lambda: pipeline.log.count() >= 5000, 120, interval=0.5, message="5000 stored")
            assert_log_holds_exactly(pipeline, result["ids"])
            assert "broker connection lost" in consumer.output()
            assert consumer.output().count("connected; consuming") >= 2
        finally:
            pipeline.close()


def test_consumer_killed_in_the_middle_of_a_5000_event_stream_loses_nothing(pipeline):
    first = pipeline.start_consumer()
    thread, result = publish_in_background(pipeline, 5000, "sigkill")
    wait_for(lambda: pipeline.log.count() >= 1500, 60, message="1500 events stored")
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(10)
    assert pipeline.log.count() < 5000, "the stream ended before the kill; nothing was tested"

    pipeline.start_consumer()
    thread.join(180)
    assert "error" not in result, result.get("error")
    wait_for(lambda: pipeline.log.count() >= 5000, 120, interval=0.5, message="5000 stored")
    assert_log_holds_exactly(pipeline, result["ids"])


def test_sigterm_finishes_the_batch_in_hand_and_exits_cleanly(pipeline):
    consumer = pipeline.start_consumer()
    thread, result = publish_in_background(pipeline, 3000, "sigterm")
    wait_for(lambda: pipeline.log.count() >= 500, 60, message="500 events stored")

    started = time.monotonic()
    os.killpg(consumer.process.pid, signal.SIGTERM)
    exit_code = consumer.process.wait(15)
    assert exit_code == 0, consumer.output()
    assert time.monotonic() - started < 5
    output = consumer.output()
    assert "received SIGTERM" in output and "consumer stopped" in output

    # Whatever it had not acknowledged is still queued: a new consumer finishes the stream.
    thread.join(180)
    assert "error" not in result, result.get("error")
    pipeline.start_consumer()
    wait_for(lambda: pipeline.log.count() >= 3000, 120, interval=0.5, message="3000 stored")
    assert_log_holds_exactly(pipeline, result["ids"])


def test_quorum_queue_with_single_active_consumer_for_clusters(mysql_url, rabbitmq_url, tmp_path):
    pipeline = Pipeline(
        mysql_url,
        rabbitmq_url,
        tmp_path,
        EVENT_QUEUE_TYPE="quorum",
        EVENT_SINGLE_ACTIVE_CONSUMER="1",
    )
    try:
        first = pipeline.start_consumer()
        standby = pipeline.start_consumer()  # connects, then waits its turn
        producer = pipeline.producer()
        ids = [producer.publish("market.ticks", "tick", {"n": n}) for n in range(20)]
        producer.close()
        wait_for(lambda: pipeline.log.count() == 20, 20, message="20 stored")
        assert_log_holds_exactly(pipeline, ids)
        with Connection(rabbitmq_url) as connection:
            declared = pipeline.topology.queue.bind(connection.default_channel)
            declared.queue_declare(passive=True)  # exists, with the quorum arguments
        # Only one of the two read: the standby stored nothing.
        assert "0 stored" in stop_and_read(standby) or "0 stored" in stop_and_read(first)
    finally:
        pipeline.close()


def stop_and_read(consumer: ConsumerProcess) -> str:
    os.killpg(consumer.process.pid, signal.SIGTERM)
    consumer.process.wait(15)
    return consumer.output()
