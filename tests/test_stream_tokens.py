"""Read tokens on ``/stream``: kiosks and scripts connect with ``auth: {"token": ...}``
and no session cookie, read the topics the token's patterns match, and are
disconnected when the token is revoked.

Revoking from the CLI reaches the servers over RabbitMQ; in embedded mode a CLI's
in-process bus reaches no server, and the periodic rights check ends the socket.
"""

from __future__ import annotations

import re

import pytest
import requests
import socketio

from .pipeline import wait_for
from .servers import base_env, free_port, run_cli
from .streaming import StreamClient, embedded_site, ingest, rabbitmq_site, signed_in_session


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def site(request, tmp_path_factory):
    """Embedded: the rights check every second is what ends a revoked token's sockets.
    RabbitMQ: the check is slowed down, so the revoke command's message is what does."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        with embedded_site(tmp, STREAM_RIGHTS_CHECK_SECONDS="1") as found:
            env = base_env(DATABASE_URL=found["db"], TMPDIR=str(tmp))
            yield {"url": found["url"], "env": env, "ingest_token": found["token"]}
    else:
        rabbitmq_url = request.getfixturevalue("rabbitmq_url")
        mysql_server = request.getfixturevalue("mysql_server")
        slow_sweep = {"STREAM_RIGHTS_CHECK_SECONDS": "3600"}
        with rabbitmq_site(tmp, rabbitmq_url, mysql_server, [free_port()], **slow_sweep) as found:
            created = run_cli(
                "tokens", "create", "--name", "tests", "--topics", "*", env=found["env"]
            )
            assert created.returncode == 0, created.stderr
            yield {
                "url": found["urls"][0],
                "env": found["env"],
                "ingest_token": created.stdout.strip().splitlines()[-1],
            }


def create_token(site, *args: str) -> tuple[int, str]:
    created = run_cli("tokens", "create", *args, env=site["env"])
    assert created.returncode == 0, created.stderr
    token_id = int(re.search(r"^token (\d+) ", created.stderr, re.MULTILINE).group(1))
    return token_id, created.stdout.strip().splitlines()[-1]


def token_socket(site, clients, token: str, transport: str = "websocket") -> StreamClient:
    client = StreamClient(site["url"], None, transport, auth={"token": token})
    clients.append(client)
    return client


def refusal(site, auth: dict) -> str:
    """The message a connection with ``auth`` is refused with."""
    refused = []
    client = socketio.Client(reconnection=False)
    client.on("connect_error", refused.append, namespace="/stream")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(site["url"], namespaces=["/stream"], auth=auth, wait_timeout=10)
    client.disconnect()
    assert refused, "no connect_error"
    return refused[0]["message"]


def marker(name: str, topic: str = "market.ticks") -> dict:
    return {"topic": topic, "type": "tick", "payload": {"marker": name}}


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_read_token_socket_reads_the_topics_of_its_patterns_only(site, clients, transport):
    _, token = create_token(site, "--read", "market.*")
    reader = token_socket(site, clients, token, transport)
    answer = reader.call("subscribe", {"topics": ["market.ticks", "audit", "system.metrics"]})
    assert answer["ok"], answer
    assert answer["subscribed"] == ["market.ticks"]
    assert answer["denied"] == ["audit", "system.metrics"]
    ingest(site["url"], site["ingest_token"], [marker("audit", "audit"), marker("one")])
    last = ingest(site["url"], site["ingest_token"], [marker("last")])[0]
    wait_for(lambda: last in {e["id"] for e in reader.events}, 10, message="the last marker")
    assert [e["payload"]["marker"] for e in reader.events] == ["one", "last"]


def test_a_token_socket_replays_from_the_since_of_its_handshake(site, clients):
    _, token = create_token(site, "--read", "market.ticks")
    live = token_socket(site, clients, token)
    live.call("subscribe", {"topics": ["market.ticks"]})
    before, missed = ingest(site["url"], site["ingest_token"], [marker("seen"), marker("missed")])
    wait_for(lambda: missed in {e["id"] for e in live.events}, 10, message="the missed marker")
    seen = {e["id"]: e["seq"] for e in live.events}[before]
    resumed = StreamClient(site["url"], None, auth={"token": token, "since": seen})
    clients.append(resumed)
    answer = resumed.call("subscribe", {"topics": ["market.ticks"]})
    assert answer["ok"] and answer["replayed"] == 1, answer
    assert [e["id"] for e in resumed.events] == [missed]


def test_a_producer_token_is_refused_at_connect(site):
    _, token = create_token(site, "--name", "a producer", "--topics", "market.*")
    assert refusal(site, {"token": token}) == (
        "a producer token may not read; create one with --read"
    )


def test_an_unknown_or_revoked_token_is_refused_at_connect(site):
    token_id, token = create_token(site, "--read", "market.*")
    assert run_cli("tokens", "revoke", str(token_id), env=site["env"]).returncode == 0
    assert refusal(site, {"token": token}) == "unknown or revoked token"
    assert refusal(site, {"token": "pbk_" + "x" * 43}) == "unknown or revoked token"


def test_a_token_socket_refuses_requests_that_come_as_someone_else(site, clients):
    _, token = create_token(site, "--read", "market.*")
    _, other = create_token(site, "--read", "market.*")
    reader = token_socket(site, clients, token, "polling")
    reader.call("subscribe", {"topics": ["market.ticks"]})
    poll = f"{site['url']}/socket.io/?EIO=4&transport=polling&sid={reader.client.eio.sid}"
    browser = signed_in_session(site["url"], "bob@example.com")
    assert browser.get(poll, timeout=5).status_code == 403
    as_other = requests.get(poll, headers={"Authorization": f"Bearer {other}"}, timeout=5)
    assert as_other.status_code == 403
    # The marker: the socket still works for its own client.
    last = ingest(site["url"], site["ingest_token"], [marker("still read")])[0]
    wait_for(lambda: last in {e["id"] for e in reader.events}, 10, message="the marker")


def test_revoking_a_token_disconnects_its_open_sockets(site, clients):
    token_id, token = create_token(site, "--read", "market.*")
    reader = token_socket(site, clients, token)
    assert reader.call("subscribe", {"topics": ["market.ticks"]})["ok"]
    revoked = run_cli("tokens", "revoke", str(token_id), env=site["env"])
    assert revoked.returncode == 0, revoked.stderr
    assert reader.disconnected.wait(10), "the revoked token's socket stayed open"
