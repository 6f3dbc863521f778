"""The admin System page: services, queues and dead letters on the real RabbitMQ."""

from __future__ import annotations

import html
import re
import secrets

import pytest
from kombu import Connection, Producer

from pulseboard.events.dead_letters import queue_status
from pulseboard.events.envelope import new_envelope
from pulseboard.events.topology import REASON_HEADER, Topology

from .conftest import AuthActions
from .pipeline import ConsumerProcess, EventLog, declared_topology, wait_for
from .servers import base_env, free_port

ACTION = re.compile(r'action="/admin/system/dead-letters/([0-9a-f]{32})/(requeue|discard)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Broker:
    """A test's own exchanges and queues on the real RabbitMQ, and a consumer for them."""

    def __init__(self, rabbitmq_url: str, tmp_path):
        self.url = rabbitmq_url
        self.tmp_path = tmp_path
        self.metrics_port = free_port()
        self.settings = {
            "APP_SLUG": f"pbt-{secrets.token_hex(4)}",
            "BROKER_URL": rabbitmq_url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",  # make_app's own file
            "CONSUMER_METRICS_PORT": str(self.metrics_port),
        }
        self.topology = Topology(slug=self.settings["APP_SLUG"])
        self.consumer: ConsumerProcess | None = None
        self.started = 0

    def start_consumer(self, **settings: str) -> None:
        env = base_env(
            **self.settings, TMPDIR=str(self.tmp_path), CONSUMER_BATCH_WAIT_MS="5", **settings
        )
        self.started += 1
        self.consumer = ConsumerProcess(env, self.tmp_path / f"consumer-{self.started}.log")
        self.consumer.wait_connected()

    def stop_consumer(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
            self.consumer = None

    def publish(self, body: bytes | str, **properties) -> None:
        with Connection(self.url) as connection:
            Producer(connection).publish(
                body,
                exchange=self.topology.exchange,
                routing_key="market.ticks",
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                **properties,
            )

    def dead_letter_count(self) -> int:
        return queue_status(self.url, self.topology, timeout=5)[1].messages


@pytest.fixture
def broker(rabbitmq_url, tmp_path):
    broker = Broker(rabbitmq_url, tmp_path)
    with declared_topology(rabbitmq_url, broker.topology):
        try:
            yield broker
        finally:
            broker.stop_consumer()


@pytest.fixture
def app(make_app, request):
    """On the test's own RabbitMQ queues; parametrized with "embedded", on the in-process bus."""
    if getattr(request, "param", None) == "embedded":
        return make_app()
    return make_app(**request.getfixturevalue("broker").settings)


def page_text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", response.get_data(as_text=True)))


def test_dead_letters_show_their_reason_and_can_be_requeued_or_discarded(
    client, auth, make_user, broker, tmp_path
):
    make_user(admin=True)
    auth.login()
    # A consumer with a small size limit refuses a big (valid) event and a malformed one.
    broker.start_consumer(EVENT_MAX_BYTES="1024")
    big = new_envelope("market.ticks", "tick", {"blob": "x" * 2000})
    broker.publish(big.to_json(), message_id=big.id)
    broker.publish(b"{not json")
    wait_for(lambda: broker.dead_letter_count() == 2, 20, message="two dead letters")
    # The limit is raised: the big event is welcome now.
    broker.stop_consumer()
    broker.start_consumer()

    page = client.get("/admin/system")
    text = page_text(page)
    assert page.status_code == 200
    assert re.search(r"message is \d+ bytes; the limit is 1024", text)
    assert "message is not JSON" in text
    assert f"From 127.0.0.1:{broker.metrics_port}/metrics" in text
    client.get("/admin/system")
    assert broker.dead_letter_count() == 2, "looking must leave the dead letters in the queue"

    assert len(ACTION.findall(page.get_data(as_text=True))) == 4  # two buttons per letter
    big_row = page.get_data(as_text=True).split(big.id, 1)[1]
    big_fingerprint = ACTION.search(big_row).group(1)
    token = CSRF.search(page.get_data(as_text=True)).group(1)

    requeued = client.post(
        f"/admin/system/dead-letters/{big_fingerprint}/requeue",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "sent to the consumer again" in page_text(requeued)
    log = EventLog(broker.settings["DATABASE_URL"])
    try:
        wait_for(lambda: log.count() == 1, 20, message="the requeued event stored")
        assert log.rows()[0][1] == big.id
    finally:
        log.close()
    assert broker.dead_letter_count() == 1

    malformed = next(fp for fp, _ in ACTION.findall(requeued.get_data(as_text=True)))
    assert malformed != big_fingerprint
    discarded = client.post(
        f"/admin/system/dead-letters/{malformed}/discard",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "discarded" in page_text(discarded)
    assert "No dead letters" in page_text(discarded)
    assert broker.dead_letter_count() == 0


def test_queue_depths_and_consumers_come_from_the_broker(client, auth, make_user, broker):
    make_user(admin=True)
    auth.login()
    broker.start_consumer()

    text = page_text(client.get("/admin/system"))

    stream_row = text.split(f"{broker.topology.queue.name}</code>", 1)[1][:200]
    assert re.search(r'<td class="text-end">0</td> <td class="text-end">1</td>', stream_row)
    for service in ("database", "broker"):
        assert re.search(rf"{service}</th> <td><span [^>]*>.{{0,80}}</span> OK</span>", text)


def test_acting_on_a_dead_letter_needs_an_admin_and_the_form_token(app, client, auth, make_user):
    make_user(admin=True)
    make_user(email="bob@example.com", name="Bob")
    auth.login()
    member = AuthActions(app.test_client())
    member.login(email="bob@example.com")
    url = f"/admin/system/dead-letters/{'0' * 32}/discard"

    without_token = client.post(url)
    as_member = member.client.post(url, data={"csrf_token": member.csrf_token("/settings/")})

    assert without_token.status_code == 400
    assert as_member.status_code == 403
    assert member.client.get("/admin/system").status_code == 403


def test_a_dead_letter_already_gone_is_reported_not_an_error(client, auth, make_user, broker):
    make_user(admin=True)
    auth.login()
    token = CSRF.search(client.get("/admin/system").get_data(as_text=True)).group(1)

    response = client.post(
        f"/admin/system/dead-letters/{'a' * 32}/requeue",
        data={"csrf_token": token},
        follow_redirects=True,
    )

    assert "no longer in the queue" in page_text(response)


@pytest.mark.parametrize("app", ["embedded"], indirect=True)
def test_embedded_mode_reads_the_in_process_queues(app, client, auth, make_user):
    make_user(admin=True)
    auth.login()
    topology = Topology.from_config(app.config)
    with Connection("memory://") as connection:
        topology.declare(connection.default_channel)
        Producer(connection).publish(
            b"{not json",
            exchange=topology.dead_letter_exchange,
            routing_key="market.ticks",
            headers={REASON_HEADER: "message is not JSON (in-process)"},
        )

    page = client.get("/admin/system")
    again = page_text(client.get("/admin/system"))
    (fingerprint, _), _ = ACTION.findall(page.get_data(as_text=True))
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    discarded = client.post(
        f"/admin/system/dead-letters/{fingerprint}/discard",
        data={"csrf_token": token},
        follow_redirects=True,
    )

    assert "Embedded mode" in again and "in-process" in again
    assert "message is not JSON (in-process)" in again, "still there after a first look"
    assert "No dead letters" in page_text(discarded)


def test_the_cli_shows_the_dead_letters_and_leaves_them_queued(runner, broker):
    empty = runner.invoke(args=["events", "dead-letters"])
    assert empty.output.endswith(f"{broker.topology.dead_letter_queue.name} is empty\n")
    with Connection(broker.url) as connection:
        Producer(connection).publish(
            b"{not json",
            exchange=broker.topology.dead_letter_exchange,
            routing_key="market.ticks",
            headers={REASON_HEADER: "message is not JSON"},
        )
    wait_for(lambda: broker.dead_letter_count() == 1, 10, message="one dead letter")

    result = runner.invoke(args=["events", "dead-letters"])

    assert result.exit_code == 0, result.output
    assert "market.ticks" in result.output and "reason: message is not JSON" in result.output
    assert "{not json" in result.output
    assert broker.dead_letter_count() == 1, "looking must leave the dead letter in the queue"
