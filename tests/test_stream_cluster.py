"""Two web instances sharing Socket.IO's channel on RabbitMQ, the log on MariaDB."""

from __future__ import annotations

import re

import pytest

from pulseboard.events.producer import Producer

from .pipeline import wait_for
from .servers import free_port
from .streaming import StreamClient, rabbitmq_site, signed_in_session


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, rabbitmq_url, mysql_server):
    ports = [free_port(), free_port()]
    tmp = tmp_path_factory.mktemp("cluster")
    with rabbitmq_site(tmp, rabbitmq_url, mysql_server, ports) as site:
        yield site


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
