"""The other producers: the CLI, the demo producer, and embedded mode end to end."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest
import requests

from pulseboard.config import load_config
from pulseboard.events import bus
from pulseboard.events.confirms import PublisherTransport
from pulseboard.events.demo import HostMetrics, run_demo
from pulseboard.events.envelope import InvalidEnvelope, parse
from pulseboard.events.producer import Producer
from pulseboard.events.topology import Topology

from .conftest import closed_port
from .pipeline import EventLog, declared_topology, drain_queue, wait_for
from .servers import VENV_BIN, base_env, gunicorn, run_cli


@pytest.fixture
def topology(rabbitmq_url):
    with declared_topology(rabbitmq_url, Topology(slug=f"pbt-{secrets.token_hex(4)}")) as declared:
        yield declared


def drain(rabbitmq_url, topology) -> list:
    return drain_queue(rabbitmq_url, topology.queue)


def test_cli_publish_puts_a_valid_event_on_the_exchange(rabbitmq_url, topology, tmp_path):
    env = base_env(
        APP_SLUG=topology.slug,
        BROKER_URL=rabbitmq_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
    )
    result = run_cli(
        "events",
        "publish",
        "--topic",
        "market.ticks",
        "--type",
        "tick",
        "--payload",
        '{"price": 101.5}',
        "--key",
        "ACME",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    [message] = drain(rabbitmq_url, topology)
    envelope = parse(message.body)
    assert envelope.id == result.stdout.strip()
    assert envelope.payload == {"price": 101.5} and envelope.key == "ACME"
    assert message.delivery_info["routing_key"] == "market.ticks"
    assert message.properties["delivery_mode"] == 2


def test_a_producer_publishes_through_the_first_node_of_a_cluster_that_answers(
    rabbitmq_url, topology
):
    down = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    producer = Producer(f"{down};{rabbitmq_url}", topology)
    try:
        event_id = producer.publish("market.ticks", "tick", {"price": 1})
    finally:
        producer.close()
    [message] = drain(rabbitmq_url, topology)
    assert message.properties["message_id"] == event_id


def test_failing_over_keeps_the_pipelined_publishers_transport(rabbitmq_url):
    url = f"amqp://guest:guest@127.0.0.1:{closed_port()}//;{rabbitmq_url}"
    with bus.connect(url, transport=PublisherTransport) as connection:
        connection.ensure_connection(max_retries=bus.retries_for_each_node(url))
        assert isinstance(connection.transport, PublisherTransport)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--topic", "Bad Topic", "--type", "t"], "invalid event: topic"),
        (["--topic", "market.ticks", "--type", "t", "--payload", "{nope"], "not JSON"),
        (["--topic", "market.ticks", "--type", "t", "--payload", "[1]"], "payload must be"),
    ],
)
def test_cli_publish_refuses_bad_input_clearly(rabbitmq_url, topology, tmp_path, args, error):
    env = base_env(
        APP_SLUG=topology.slug,
        BROKER_URL=rabbitmq_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
    )
    result = run_cli("events", "publish", *args, env=env)
    assert result.returncode != 0
    assert error in result.stderr
    assert "Traceback" not in result.stderr
    assert drain(rabbitmq_url, topology) == []


def test_demo_producer_emits_ticks_metrics_from_proc_and_notices(rabbitmq_url, topology):
    config = load_config(base_env(APP_SLUG=topology.slug, BROKER_URL=rabbitmq_url))
    producer = Producer.from_config(config)
    try:
        sent = run_demo(producer, rate=20, duration=1.5, symbols=["ACME", "GLOBX"], seed=1)
    finally:
        producer.close()
    envelopes = [parse(message.body) for message in drain(rabbitmq_url, topology)]
    assert len(envelopes) == sent
    ticks = [e for e in envelopes if e.topic == "market.ticks"]
    metrics = [e for e in envelopes if e.topic == "system.metrics"]
    assert 20 <= len(ticks) <= 40
    assert {e.key for e in ticks} <= {"ACME", "GLOBX"}
    assert all(e.payload["bid"] <= e.payload["price"] <= e.payload["ask"] for e in ticks)
    assert metrics and 0 <= metrics[0].payload["cpu_pct"] <= 100
    assert metrics[0].payload["mem_total_mb"] > 0


def test_host_metrics_come_from_proc():
    reading = HostMetrics().read()
    assert set(reading) == {"cpu_pct", "mem_used_mb", "mem_total_mb", "mem_pct", "load"}
    assert len(reading["load"]) == 3


def test_embedded_mode_runs_the_consumer_inside_the_web_process(tmp_path):
    """memory:// bus and SQLite: an event posted to the API lands in the log, one process."""
    database = tmp_path / "embedded.db"
    env = base_env(
        BROKER_URL="memory://", DATABASE_URL=f"sqlite:///{database}", TMPDIR=str(tmp_path)
    )
    assert run_cli("db", "upgrade", env=env).returncode == 0
    created = run_cli("tokens", "create", "--name", "dev", "--topics", "*", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    log = EventLog(f"sqlite:///{database}")
    try:
        with gunicorn(env) as url:
            response = requests.post(
                f"{url}/api/v1/events",
                data=json.dumps(
                    [
                        {"topic": "market.ticks", "type": "tick", "payload": {"n": n}}
                        for n in range(3)
                    ]
                ),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=10,
            )
            assert response.status_code == 202, response.text
            ids = response.json()["accepted"]
            wait_for(lambda: log.count() == 3, 10, message="3 events in the log")
        assert [row[1] for row in log.rows()] == ids
    finally:
        log.close()


def test_the_consumer_script_explains_what_is_wrong_instead_of_starting(tmp_path):
    script = str(VENV_BIN / "pulseboard-consumer")
    embedded = subprocess.run(
        [script],
        env=base_env(BROKER_URL="memory://", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert embedded.returncode != 0
    assert "runs inside the web process" in embedded.stderr
    misconfigured = subprocess.run(
        [script],
        env=base_env(UI_LAYOUT="floating"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert misconfigured.returncode == 78
    assert "configuration error: UI_LAYOUT" in misconfigured.stderr


def test_the_python_api_applies_the_configured_depth_limit(make_app):
    app = make_app(EVENT_MAX_DEPTH="3")
    producer = Producer.from_config(app.config)
    with pytest.raises(InvalidEnvelope, match="3 levels"):
        producer.publish("market.ticks", "tick", {"a": {"b": {"c": {}}}})
    producer.close()


def test_the_folder_bus_carries_producers_in_other_processes_in_order(tmp_path):
    """filesystem:// (make dev): the CLI and a script reach the consumer in the web process,
    and a burst from one producer is stored in the order it was published."""
    database = tmp_path / "embedded.db"
    env = base_env(
        BROKER_URL=f"filesystem://{tmp_path / 'bus'}",
        DATABASE_URL=f"sqlite:///{database}",
        TMPDIR=str(tmp_path),
    )
    assert run_cli("db", "upgrade", env=env).returncode == 0
    log = EventLog(f"sqlite:///{database}")
    try:
        with gunicorn(env):
            published = run_cli(
                "events", "publish", "--topic", "market.ticks", "--type", "tick",
                "--key", "ACME", "--payload", '{"price": 1.5}', env=env,
            )  # fmt: skip
            assert published.returncode == 0, published.stderr
            wait_for(lambda: log.count() == 1, 10, message="the CLI's event in the log")
            assert log.rows()[0][1] == published.stdout.strip()

            producer = Producer.from_config(load_config(env))
            try:
                ids = [producer.publish("market.ticks", "tick", {"n": n}) for n in range(300)]
            finally:
                producer.close()
            wait_for(lambda: log.count() == 301, 30, message="the burst in the log")
        assert [row[1] for row in log.rows()][1:] == ids
    finally:
        log.close()


def test_the_cli_will_not_publish_into_its_own_process(tmp_path):
    env = base_env(BROKER_URL="memory://", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    result = run_cli(
        "events", "publish", "--topic", "market.ticks", "--type", "tick", env=env
    )  # fmt: skip
    assert result.returncode != 0
    assert "BROKER_URL is memory://: events published by this command" in result.stderr
    assert "filesystem://" in result.stderr
