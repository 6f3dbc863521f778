"""The consumer through a database outage, on a MariaDB server of the test's own.

While the database is down the consumer holds the messages it has, fetches no
more than its prefetch window, waits longer and longer between attempts, and
says so in one warning line each; once the database is back, every event is
stored and emitted exactly once.
"""

from __future__ import annotations

import os
import re
import shutil
import signal

import pytest
from kombu import Connection

from pulseboard.events.outages import Backoff

from .conftest import service_missing
from .pipeline import (
    Pipeline,
    SocketIOListener,
    assert_log_holds_exactly,
    publish_stream,
    wait_for,
)
from .servers import PrivateMariaDB

RETRY = re.compile(
    r" WARNING pulseboard\.consumer: database unavailable \(OperationalError: \(\d+, .*\)\); "
    r"holding (\d+) messages, retrying in ([\d.]+)s \(attempt (\d+)\)$",
    re.M,
)
# Every record is one line that starts with its time: no traceback, no wrapped message.
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
PREFETCH, PUBLISHED = 50, 200
BASE_MS, MAX_MS = 200, 3200


@pytest.fixture
def mariadb(tmp_path):
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        service_missing("A private MariaDB (mariadbd)", "this machine")
    server = PrivateMariaDB(tmp_path / "mariadb")
    try:
        server.start()
        yield server
    finally:
        server.stop()  # even when the test fails with the server down or up


@pytest.fixture
def pipeline(mariadb, rabbitmq_url, tmp_path):
    pipeline = Pipeline(
        mariadb.create_database(),
        rabbitmq_url,
        tmp_path,
        CONSUMER_PREFETCH=str(PREFETCH),
        CONSUMER_BATCH_SIZE="20",
        CONSUMER_RETRY_BASE_MS=str(BASE_MS),
        CONSUMER_RETRY_MAX_MS=str(MAX_MS),
    )
    yield pipeline
    pipeline.close()


def waiting_in_queue(pipeline: Pipeline) -> int:
    """Messages ready in the queue, not handed to any consumer."""
    with Connection(pipeline.broker_url) as connection:
        queue = pipeline.topology.queue.bind(connection.default_channel)
        return queue.queue_declare(passive=True).message_count


def test_a_database_outage_is_waited_out_with_growing_delays_and_loses_nothing(mariadb, pipeline):
    listener = SocketIOListener(pipeline.broker_url, pipeline.topology.socketio_channel)
    consumer = pipeline.start_consumer()
    ids = publish_stream(pipeline, 1, "before")
    wait_for(lambda: pipeline.log.count() == 1, 20, message="the first event stored")

    mariadb.stop()
    ids += publish_stream(pipeline, PUBLISHED, "outage")
    wait_for(lambda: len(RETRY.findall(consumer.output())) >= 6, 60, message="six retries")

    # The prefetch window is in hand; the rest waits in the queue, never handed out.
    wait_for(lambda: waiting_in_queue(pipeline) == PUBLISHED - PREFETCH, 10, message="held")
    retries = [
        (int(held), float(delay), int(n)) for held, delay, n in RETRY.findall(consumer.output())
    ]
    assert [n for _, _, n in retries] == list(range(1, len(retries) + 1))  # never reset
    ceiling = Backoff(BASE_MS / 1000, MAX_MS / 1000).ceiling
    assert all(delay <= ceiling(n) + 0.005 for _, delay, n in retries)
    assert max(delay for _, delay, _ in retries[1:]) > ceiling(1)  # it grows
    assert retries[-1][0] == PREFETCH

    mariadb.start()
    wait_for(lambda: pipeline.log.count() == 1 + PUBLISHED, 60, message="every event stored")
    wait_for(lambda: waiting_in_queue(pipeline) == 0, 20, message="the queue drained")
    wait_for(lambda: len(listener.events()) >= len(ids), 20, message="every event emitted")
    listener.close()
    assert_log_holds_exactly(pipeline, ids)
    assert sorted(event["id"] for event in listener.events()) == sorted(ids)
    output = consumer.output()
    assert " ERROR " not in output, output
    assert all(STAMP.match(line) for line in output.splitlines()), "a record of many lines"
    assert output.count("connected; consuming") == 1  # the broker connection was kept


def test_sigterm_while_the_database_is_down_leaves_the_batch_to_the_broker(mariadb, pipeline):
    consumer = pipeline.start_consumer()
    mariadb.stop()
    ids = publish_stream(pipeline, 30, "stopped")
    wait_for(lambda: RETRY.search(consumer.output()), 30, message="a retry")

    os.killpg(consumer.process.pid, signal.SIGTERM)
    assert consumer.process.wait(15) == 0, consumer.output()
    assert "left unacknowledged for redelivery" in consumer.output()
    assert waiting_in_queue(pipeline) == 30  # handed back whole, nothing acknowledged

    mariadb.start()
    pipeline.start_consumer()
    wait_for(lambda: pipeline.log.count() == 30, 30, message="every event stored")
    assert_log_holds_exactly(pipeline, ids)
