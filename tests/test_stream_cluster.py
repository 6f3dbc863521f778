"""Two web instances sharing Socket.IO's channel on RabbitMQ, the log on MariaDB."""

from __future__ import annotations

import contextlib
import re
import secrets

import pytest

from pulseboard.config import load_config
from pulseboard.events.producer import Producer
from pulseboard.events.topology import Topology

from .conftest import PASSWORD
from .pipeline import ConsumerProcess, declared_topology, wait_for
from .servers import base_env, free_port, gunicorn, run_cli, temporary_database
from .streaming import StreamClient, signed_in_session


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, rabbitmq_url, mysql_server):
    tmp = tmp_path_factory.mktemp("cluster")
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as stack:
        env = base_env(
            APP_SLUG=f"pbt-{secrets.token_hex(4)}",
            DATABASE_URL=stack.enter_context(temporary_database(mysql_server)),
            BROKER_URL=rabbitmq_url,
            TMPDIR=str(tmp),
            PUBLIC_ORIGINS=",".join(f"http://127.0.0.1:{port}" for port in ports),
            AUTH_RATE_LIMIT="1000/minute",
            CONSUMER_BATCH_WAIT_MS="5",
        )
        assert run_cli("db", "upgrade", env=env).returncode == 0
        created = run_cli(
            "users", "create", "bob@example.com", "--password-stdin", env=env, input=PASSWORD + "\n"
        )
        assert created.returncode == 0, created.stderr
        topology = Topology.from_config(load_config(env))
        stack.enter_context(declared_topology(rabbitmq_url, topology))
        urls = [stack.enter_context(gunicorn(env, port=port)) for port in ports]
        consumer = ConsumerProcess(env, tmp / "consumer.log")
        stack.callback(consumer.stop)
        consumer.wait_connected()
        yield {"urls": urls, "config": load_config(env)}


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_an_event_reaches_subscribers_on_every_instance(cluster, clients, transport):
    for url in cluster["urls"]:
        client = StreamClient(url, signed_in_session(url, "bob@example.com"), transport)
        client.call("subscribe", {"topics": ["market.ticks"]})
        clients.append(client)
    producer = Producer.from_config(cluster["config"])
    ids = [producer.publish("market.ticks", "tick", {"n": n}, key="ACME") for n in range(5)]
    producer.close()
    for client in clients:
        assert [e["id"] for e in client.wait_for_events(5)] == ids


def test_signing_out_on_one_instance_disconnects_the_socket_on_the_other(cluster, clients):
    first, second = cluster["urls"]
    browser = signed_in_session(first, "bob@example.com")
    client = StreamClient(second, browser, "websocket")  # the same session, other instance
    clients.append(client)
    client.call("subscribe", {"topics": ["market.ticks"]})
    page = browser.get(f"{first}/settings/", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    browser.post(f"{first}/auth/logout", data={"csrf_token": token}, timeout=10)
    assert client.disconnected.wait(2), "the socket on the other instance stayed open"
    wait_for(lambda: not client.client.connected, 2, message="client sees the disconnect")
