"""Producers pipeline their publishes and wait for every confirm; whatever the broker did not
confirm is named, exactly, so it can be sent again with the same ids.

A queue with ``x-max-length`` and ``x-overflow: reject-publish`` makes the real broker
refuse (``basic.nack``) every event past its length; a RabbitMQ node of the test's own,
stopped in the middle of a batch, cuts the connection as a broker outage does.
"""

from __future__ import annotations

import json
import secrets
import threading

import amqp
import pytest
from kombu import Connection, Consumer, Queue

from pulseboard.api.tokens import issue_token
from pulseboard.events.confirms import ConfirmCallbacksMissing
from pulseboard.events.envelope import new_envelope, parse
from pulseboard.events.producer import Producer, PublishError
from pulseboard.events.topology import Topology
from pulseboard.extensions import db

from .pipeline import declared_topology, drain_queue, wait_for
from .servers import base_env, private_rabbitmq, rabbitmqctl, run_cli

ROOM = 50  # events the full queue takes before it refuses


@pytest.fixture
def topology(rabbitmq_url):
    with declared_topology(rabbitmq_url, Topology(slug=f"pbt-{secrets.token_hex(4)}")) as declared:
        yield declared


@pytest.fixture
def full_after_room(rabbitmq_url, topology):
    """A second queue on the topology's exchange that refuses every event past ``ROOM``."""
    queue = Queue(
        f"{topology.slug}.full",
        exchange=topology.exchange,
        routing_key="#",
        queue_arguments={"x-max-length": ROOM, "x-overflow": "reject-publish"},
    )
    with Connection(rabbitmq_url) as connection:
        queue.bind(connection.default_channel).declare()
    yield queue
    with Connection(rabbitmq_url) as connection:
        connection.default_channel.queue_delete(queue.name)


def ticks(count: int) -> list:
    return [new_envelope("market.ticks", "tick", {"n": n}) for n in range(count)]


@pytest.mark.parametrize("window", [1, 64, 1000])
def test_a_batch_returns_once_every_event_is_queued_in_order(rabbitmq_url, topology, window):
    producer = Producer(rabbitmq_url, topology, window=window)
    envelopes = ticks(300)
    try:
        ids = producer.publish_envelopes(envelopes)
    finally:
        producer.close()
    queued = [m.properties["message_id"] for m in drain_queue(rabbitmq_url, topology.queue)]
    assert ids == queued == [envelope.id for envelope in envelopes]


def test_events_the_broker_refuses_are_named_and_no_other(rabbitmq_url, topology, full_after_room):
    producer = Producer(rabbitmq_url, topology, window=1000)
    envelopes = ticks(ROOM + 70)
    try:
        with pytest.raises(PublishError) as refused:
            producer.publish_envelopes(envelopes)
        # A refused channel is not used again: sending again starts on a fresh one.
        dropped = producer._connection is None
        kept = [m.properties["message_id"] for m in drain_queue(rabbitmq_url, full_after_room)]
        again = producer.publish_envelopes(envelopes[ROOM : 2 * ROOM])  # room for ROOM
    finally:
        producer.close()
    assert refused.value.unconfirmed == [envelope.id for envelope in envelopes[ROOM:]]
    assert "70 of 120 events not confirmed" in str(refused.value)
    assert "basic.nack" in str(refused.value)
    assert dropped
    assert kept == [envelope.id for envelope in envelopes[:ROOM]]
    assert again == refused.value.unconfirmed[:ROOM]


def test_the_ingest_api_answers_503_naming_the_unconfirmed_events_and_a_body_to_retry(
    make_app, rabbitmq_url, topology, full_after_room
):
    app = make_app(APP_SLUG=topology.slug, BROKER_URL=rabbitmq_url, API_MAX_BATCH="500")
    with app.app_context():
        _, token = issue_token(db.session, "feed", ["market.*"])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    events = [{"topic": "market.ticks", "type": "tick", "payload": {"n": n}} for n in range(80)]
    client = app.test_client()
    refused = client.post("/api/v1/events", data=json.dumps(events), headers=headers)
    body = refused.get_json()
    assert refused.status_code == 503
    assert len(body["accepted"]) == ROOM and len(body["unconfirmed"]) == 80 - ROOM
    assert [event["id"] for event in body["retry"]] == body["unconfirmed"]

    with Connection(rabbitmq_url) as connection:  # the full queue is gone: room again
        connection.default_channel.queue_delete(full_after_room.name)
    retried = client.post("/api/v1/events", data=json.dumps(body["retry"]), headers=headers)
    app.extensions["pulseboard.producer"].close()
    assert retried.status_code == 202
    assert retried.get_json()["accepted"] == body["unconfirmed"]
    queued = [parse(message.body) for message in drain_queue(rabbitmq_url, topology.queue)]
    first, again = queued[:80], queued[80:]
    assert [e.id for e in first] == body["accepted"] + body["unconfirmed"]
    assert again == first[ROOM:]  # the same events: the log keeps each once


def test_the_cli_publishes_json_lines_from_stdin_and_prints_each_confirmed_id(
    rabbitmq_url, topology, tmp_path
):
    env = base_env(
        APP_SLUG=topology.slug,
        BROKER_URL=rabbitmq_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
    )
    lines = [
        json.dumps({"topic": "market.ticks", "type": "tick", "payload": {"n": n}})
        for n in range(20)
    ]
    own = {
        "id": "chosen-by-the-producer",
        "topic": "market.news",
        "type": "headline",
        "timestamp": "2026-11-26T14:03:07.123Z",
        "payload": {},
    }
    result = run_cli(
        "events", "publish-batch", env=env, input="\n".join([*lines, "", json.dumps(own)]) + "\n"
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split()
    queued = [parse(message.body) for message in drain_queue(rabbitmq_url, topology.queue)]
    assert printed == [envelope.id for envelope in queued]
    assert [e.payload.get("n") for e in queued[:20]] == list(range(20))
    assert printed[-1] == "chosen-by-the-producer"


def test_the_cli_refuses_a_bad_line_by_number_before_publishing_its_chunk(
    rabbitmq_url, topology, tmp_path
):
    env = base_env(
        APP_SLUG=topology.slug,
        BROKER_URL=rabbitmq_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
    )
    good = json.dumps({"topic": "market.ticks", "type": "tick", "payload": {}})
    result = run_cli("events", "publish-batch", env=env, input=f"{good}\n{good}\n{{nope\n")
    assert result.returncode != 0
    assert "line 3:" in result.stderr and "Traceback" not in result.stderr
    assert drain_queue(rabbitmq_url, topology.queue) == []


def test_the_cli_writes_what_was_refused_to_publish_again(
    rabbitmq_url, topology, full_after_room, tmp_path
):
    env = base_env(
        APP_SLUG=topology.slug,
        BROKER_URL=rabbitmq_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
    )
    lines = [
        json.dumps({"topic": "market.ticks", "type": "tick", "payload": {"n": n}})
        for n in range(60)
    ]
    unconfirmed = tmp_path / "unconfirmed.jsonl"
    result = run_cli(
        "events",
        "publish-batch",
        "--unconfirmed",
        str(unconfirmed),
        env=env,
        input="\n".join(lines),
    )
    assert result.returncode != 0
    assert f"not confirmed: lines {ROOM + 1}-60" in result.stderr
    confirmed = result.stdout.split()
    again = [parse(line) for line in unconfirmed.read_text().splitlines()]
    queued = [parse(message.body) for message in drain_queue(rabbitmq_url, topology.queue)]
    assert confirmed + [envelope.id for envelope in again] == [e.id for e in queued]
    assert [e.payload["n"] for e in again] == list(range(ROOM, 60))


def message_ids(url: str, queue: Queue, idle: float = 2.0) -> list[str]:
    """Every message id waiting in ``queue``, taken (no acknowledgement needed)."""
    ids: list[str] = []
    with Connection(url) as connection:
        consumer = Consumer(
            connection,
            [queue],
            no_ack=True,
            callbacks=[lambda _, m: ids.append(m.properties["message_id"])],
        )
        with consumer:
            while True:
                try:
                    connection.drain_events(timeout=idle)
                except TimeoutError:
                    return ids


def queue_depth(url: str, queue: Queue) -> int:
    """Messages in ``queue``; 0 until the producer has declared it."""
    with Connection(url) as connection:
        try:
            return queue.bind(connection.default_channel).queue_declare(passive=True).message_count
        except amqp.exceptions.NotFound:
            return 0


def test_a_connection_cut_mid_batch_names_exactly_the_events_not_confirmed():
    """A node of the test's own is stopped while a pipelined batch is in flight: every event
    the error does not name is in the queue once the node is back."""
    with private_rabbitmq() as (url, node):
        topology = Topology(slug=f"pbt-{secrets.token_hex(4)}")
        producer = Producer(url, topology, max_retries=1, window=1000)
        envelopes = ticks(100_000)
        outcome: dict = {}

        def publish() -> None:
            try:
                outcome["ids"] = producer.publish_envelopes(envelopes)
            except PublishError as error:
                outcome["error"] = error

        publishing = threading.Thread(target=publish)
        publishing.start()
        wait_for(lambda: queue_depth(url, topology.queue) > 2000, 30, message="the batch under way")
        rabbitmqctl(node, "stop_app")
        publishing.join(60)
        rabbitmqctl(node, "start_app")
        producer.close()
        assert "error" in outcome, "the batch finished before the cut: make it longer"
        unconfirmed = set(outcome["error"].unconfirmed)
        confirmed = [e.id for e in envelopes if e.id not in unconfirmed]
        stored = set(message_ids(url, topology.queue))
        assert confirmed and unconfirmed
        assert outcome["error"].unconfirmed == [e.id for e in envelopes if e.id in unconfirmed]
        assert set(confirmed) <= stored  # every event the producer called confirmed is kept
        assert not unconfirmed <= stored  # and the error names events that were not sent


def test_a_py_amqp_without_the_confirm_callbacks_stops_the_start(monkeypatch, make_app):
    monkeypatch.delattr(amqp.Channel, "_on_basic_nack")
    with pytest.raises(
        ConfirmCallbacksMissing, match=r"(?s)amqp \(py-amqp\) \S+: .*_on_basic_nack"
    ):
        make_app()


def test_only_the_confirms_module_reads_the_confirm_callbacks():
    from pulseboard.config import PROJECT_ROOT

    package = PROJECT_ROOT / "src" / "pulseboard"
    readers = sorted(
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if "basic_ack" in path.read_text() or "confirm_select" in path.read_text()
    )
    assert readers == ["events/confirms.py"]
