"""Prometheus metrics: who may read /metrics, and that the counts follow what happens."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest
import requests
from kombu import Connection, Producer
from prometheus_client.parser import text_string_to_metric_families

from pulseboard import ConfigError
from pulseboard.config import load_config
from pulseboard.events.envelope import new_envelope
from pulseboard.events.producer import Producer as EventProducer
from pulseboard.events.topology import Topology
from pulseboard.metrics import reason_label
from pulseboard.metrics.sockets import SocketGauges, topic_label

from .conftest import AuthActions
from .pipeline import ConsumerProcess, declared_topology, wait_for
from .servers import base_env, free_port, run_cli
from .streaming import StreamClient, embedded_site, ingest, signed_in_session

OUTSIDE = {"REMOTE_ADDR": "203.0.113.7"}
TOKEN = "metrics-" + "x" * 32


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` with these labels in a scrape (0 if none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def scrape_url(url: str) -> str:
    """A scrape over real HTTP, as Prometheus makes it."""
    return requests.get(f"{url}/metrics", timeout=10).text


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


# --- Who may read /metrics -----------------------------------------------------


def test_metrics_are_served_to_loopback_and_refused_to_other_addresses(client):
    served = client.get("/metrics")
    refused = client.get("/metrics", environ_base=OUTSIDE)

    assert served.status_code == 200
    assert served.mimetype == "text/plain" and "pulseboard_http_requests_total" in served.text
    assert refused.status_code == 403 and "pulseboard" not in refused.text


def test_allowed_networks_are_configurable(make_app):
    client = make_app(METRICS_ALLOWED_NETWORKS="10.0.0.0/8, 2001:db8::/32").test_client()

    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::5"}).status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback is no longer listed


def test_the_token_opens_metrics_from_anywhere_and_a_wrong_one_is_refused(make_app):
    client = make_app(METRICS_TOKEN=TOKEN).test_client()

    def get(token, **kw):
        return client.get("/metrics", headers={"Authorization": f"Bearer {token}"}, **kw)

    assert get(TOKEN, environ_base=OUTSIDE).status_code == 200
    assert get(TOKEN[:-1] + "y", environ_base=OUTSIDE).status_code == 403
    assert get("", environ_base=OUTSIDE).status_code == 403
    # A wrong token is refused even from an allowed address.
    assert get("nope").status_code == 403


def test_without_a_configured_token_no_bearer_token_is_accepted(client):
    response = client.get("/metrics", headers={"Authorization": "Bearer "}, environ_base=OUTSIDE)
    assert response.status_code == 403


def test_behind_the_proxy_the_forwarded_client_address_is_the_one_checked(make_app):
    client = make_app(PROXY_FIX_HOPS="1").test_client()
    through_nginx = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert through_nginx.status_code == 403


def test_metrics_carry_no_session_cookie(client):
    assert "Set-Cookie" not in client.get("/metrics").headers


@pytest.mark.parametrize(
    "setting, value_",
    [
        ("METRICS_ALLOWED_NETWORKS", "10.0.0.0/8,not-a-network"),
        ("METRICS_TOKEN", "short"),
        ("PROMETHEUS_MULTIPROC_DIR", "/nonexistent/metrics"),
        ("CONSUMER_METRICS_PORT", "70000"),
    ],
)
def test_bad_metrics_settings_stop_start_up_naming_the_variable(setting, value_):
    with pytest.raises(ConfigError, match=setting):
        load_config({"APP_ENV": "test", setting: value_})


# --- What is counted in a web instance -----------------------------------------


def test_requests_are_counted_by_endpoint_and_status(client):
    before = scrape(client)
    client.get("/healthz")
    client.get("/no/such/page")
    after = scrape(client)

    def delta(**labels):
        name = "pulseboard_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(endpoint="main.healthz", method="GET", status="200") == 1
    assert delta(endpoint="unmatched", method="GET", status="404") == 1
    assert value(after, "pulseboard_http_request_duration_seconds_count", endpoint="main.healthz")


def test_sign_ins_are_counted_by_method_and_result(client, auth, make_user):
    make_user()
    before = scrape(client)
    auth.login(password="not the password")
    auth.login()
    after = scrape(client)

    def delta(result):
        name = "pulseboard_logins_total"
        return value(after, name, method="password", result=result) - value(
            before, name, method="password", result=result
        )

    assert (delta("failure"), delta("success")) == (1, 1)


def test_a_refused_oauth_sign_in_is_counted_under_its_provider(make_app):
    client = make_app(GITHUB_CLIENT_ID="id", GITHUB_CLIENT_SECRET="secret").test_client()
    labels = {"method": "github", "result": "failure"}
    before = value(scrape(client), "pulseboard_logins_total", **labels)

    client.get("/auth/oauth/github/callback", query_string={"code": "c", "state": "forged"})

    assert value(scrape(client), "pulseboard_logins_total", **labels) - before == 1


def test_rate_limit_refusals_are_counted(make_app):
    client = make_app(RATELIMIT_ENABLED="1", AUTH_RATE_LIMIT="1/minute").test_client()
    name, labels = "pulseboard_rate_limited_total", {"scope": "http", "endpoint": "auth.login"}
    before = value(scrape(client), name, **labels)
    signing_in = AuthActions(client)
    statuses = [signing_in.login().status_code for _ in range(2)]

    assert statuses[-1] == 429
    assert value(scrape(client), name, **labels) - before == 1


def test_topic_labels_stay_few():
    patterns = ("market.*", "notices", "audit")
    assert topic_label("user.42", patterns) == "user.*"
    assert topic_label("market.ticks", patterns) == "market.*"
    assert topic_label("notices", patterns) == "notices"
    assert topic_label("secret.stuff", patterns) == "other"


def test_dead_letter_reasons_become_a_few_fixed_labels():
    assert reason_label("message is not JSON (Expecting value at 0)") == "not_json"
    assert reason_label("message is 70000 bytes; the limit is 65536") == "too_large"
    assert reason_label("unknown field(s): extra") == "unknown_field"
    assert reason_label("timestamp needs a time zone (end it with Z for UTC)") == "invalid_field"


# --- Real processes -------------------------------------------------------------


def test_consumer_metrics_follow_events_through_rabbitmq(rabbitmq_url, tmp_path):
    port = free_port()
    env = base_env(
        APP_SLUG=f"pbt-{secrets.token_hex(4)}",
        BROKER_URL=rabbitmq_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'events.db'}",
        TMPDIR=str(tmp_path),
        CONSUMER_BATCH_WAIT_MS="20",
        CONSUMER_METRICS_PORT=str(port),
    )
    assert run_cli("db", "upgrade", env=env).returncode == 0
    config = load_config(env)
    topology = Topology.from_config(config)
    with declared_topology(rabbitmq_url, topology):
        consumer = ConsumerProcess(env, tmp_path / "consumer.log")
        try:
            consumer.wait_connected()
            producer = EventProducer.from_config(config)
            producer.publish_envelopes(
                [new_envelope("market.ticks", "tick", {"n": n}) for n in range(5)]
            )
            producer.close()
            with Connection(rabbitmq_url) as connection:
                Producer(connection).publish(
                    b"{not json", exchange=topology.exchange, routing_key="market.ticks"
                )

            def consumer_scrape():
                text = scrape_url(f"http://127.0.0.1:{port}")
                return text if value(text, "pulseboard_events_consumed_total") >= 6 else None

            text = wait_for(consumer_scrape, 20, message="6 messages consumed")
        finally:
            consumer.stop()

    assert value(text, "pulseboard_events_consumed_total") == 6
    assert value(text, "pulseboard_events_stored_total") == 5
    assert value(text, "pulseboard_events_emitted_total") == 5
    assert value(text, "pulseboard_events_dead_lettered_total", reason="not_json") == 1
    assert value(text, "pulseboard_consumer_lag_seconds_count") == 5
    assert value(text, "pulseboard_consumer_batch_size_sum") == 6
    assert value(text, "pulseboard_consumer_last_batch_timestamp_seconds") > 0


def test_instances_sharing_a_metrics_folder_are_summed_in_one_scrape(tmp_path):
    shared = tmp_path / "metrics"
    shared.mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        embedded_site(tmp_path / "a", PROMETHEUS_MULTIPROC_DIR=str(shared)) as a,
        embedded_site(tmp_path / "b", PROMETHEUS_MULTIPROC_DIR=str(shared)) as b,
    ):

        def scrape_a() -> str:
            return scrape_url(a["url"])

        healthz = {"endpoint": "main.healthz", "status": "200"}
        before = value(scrape_a(), "pulseboard_http_requests_total", **healthz)
        for url, times in ((a["url"], 3), (b["url"], 4)):
            for _ in range(times):
                requests.get(f"{url}/healthz", timeout=10)
        clients = [
            StreamClient(site["url"], signed_in_session(site["url"], "bob@example.com"))
            for site in (a, b)
        ]
        try:
            for client in clients:
                assert client.call("subscribe", {"topics": ["market.ticks"]})["ok"]
            text = scrape_a()
            clients.pop().close()

            def once_b_is_left():
                current = scrape_a()
                return current if value(current, "pulseboard_sockets_connected") == 1 else None

            after_one_left = wait_for(once_b_is_left, 10, message="b's socket counted out")
        finally:
            for client in clients:
                client.close()

    assert value(text, "pulseboard_http_requests_total", **healthz) - before == 7
    assert value(text, "pulseboard_sockets_connected", transport="websocket") == 2
    assert value(text, "pulseboard_subscriptions", topic="market.ticks") == 2
    per_instance = {
        sample.labels["web_instance"].rsplit(":", 1)[1]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "pulseboard_instance_users_connected"
    }
    ports = {site["url"].rsplit(":", 1)[1] for site in (a, b)}
    assert per_instance == dict.fromkeys(ports, 1)
    assert value(after_one_left, "pulseboard_subscriptions", topic="market.ticks") == 1


def test_sockets_subscriptions_and_replays_are_counted(tmp_path):
    with embedded_site(tmp_path) as site:
        url = site["url"]
        polling = StreamClient(url, signed_in_session(url, "bob@example.com"), "polling")
        websocket = StreamClient(url, signed_in_session(url, "ada@example.com"), "websocket")
        try:
            ingest(url, site["token"], [{"topic": "market.ticks", "type": "t", "payload": {}}] * 2)

            def both_stored():
                return value(scrape_url(url), "pulseboard_events_stored_total") == 2

            wait_for(both_stored, 10, message="both events stored by the embedded consumer")
            polling.call("subscribe", {"topics": ["market.ticks", "user.2"], "since": 1})
            websocket.call("subscribe", {"topics": ["user.1"]})
            text = scrape_url(url)
        finally:
            polling.close()
            websocket.close()

    assert value(text, "pulseboard_sockets_connected", transport="polling") == 1
    assert value(text, "pulseboard_sockets_connected", transport="websocket") == 1
    assert value(text, "pulseboard_subscriptions", topic="user.*") == 2
    assert value(text, "pulseboard_subscriptions", topic="market.ticks") == 1
    assert value(text, "pulseboard_instance_users_connected") == 2
    assert value(text, "pulseboard_replay_requests_total") == 1
    assert value(text, "pulseboard_replayed_events_total") == 1
    assert value(text, "pulseboard_replay_gaps_total") == 0


def test_each_live_event_a_round_sends_is_timed_once_however_many_sockets_take_it(tmp_path):
    with embedded_site(tmp_path) as site:
        url = site["url"]
        clients = [
            StreamClient(url, signed_in_session(url, "bob@example.com"), "polling"),
            StreamClient(url, signed_in_session(url, "ada@example.com"), "websocket"),
        ]
        try:
            for client in clients:
                assert client.call("subscribe", {"topics": ["market.ticks"]})["ok"]
            ingest(url, site["token"], [{"topic": "market.ticks", "type": "t", "payload": {}}] * 3)
            for client in clients:
                client.wait_for_events(3)

            def timed():  # a round is timed once its last socket has it
                text = scrape_url(url)
                return (
                    text if value(text, "pulseboard_stream_delivery_age_seconds_count") >= 3 else ""
                )

            text = wait_for(timed, 10, message="the round timed")
        finally:
            for client in clients:
                client.close()

    assert value(text, "pulseboard_stream_delivery_age_seconds_count") == 3
    # Just ingested on this machine: well under a minute old when sent.
    assert value(text, "pulseboard_stream_delivery_age_seconds_bucket", le="60.0") == 3
    assert 0 <= value(text, "pulseboard_stream_delivery_age_seconds_sum") < 3 * 60


class UpgradingServer:
    """Stands in for the Socket.IO server: a socket that starts on polling, then upgrades."""

    def __init__(self):
        self.current = "polling"
        self.tasks = []

    def transport(self, sid, namespace):
        return self.current

    def start_background_task(self, target, *args):
        self.tasks.append(target)


def test_a_socket_that_upgrades_after_connecting_moves_to_websocket():
    from prometheus_client import REGISTRY

    gauges, server = SocketGauges(), UpgradingServer()

    def count(transport):
        return REGISTRY.get_sample_value("pulseboard_sockets_connected", {"transport": transport})

    before = count("polling") or 0, count("websocket") or 0
    gauges.connected(server, "sid-1", user_id=1)
    counted_first = count("polling") - before[0]
    server.current = "websocket"
    gauges.recheck(server)

    assert counted_first == 1 and server.tasks, "counted as polling, recheck scheduled"
    assert (count("polling") - before[0], count("websocket") - before[1]) == (0, 1)
    gauges.disconnected("sid-1")
    assert (count("polling") - before[0], count("websocket") - before[1]) == (0, 0)


def test_first_uses_from_two_threads_at_once_make_one_set_of_metrics():
    # A request and a background task (the loop-lag probe) may both be first.
    script = """
import threading
from pulseboard import metrics

start = threading.Barrier(8)
made, errors = [], []

def first_use():
    start.wait()
    try:
        made.append(metrics.get())
    except Exception as error:
        errors.append(repr(error))

threads = [threading.Thread(target=first_use) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len({id(m) for m in made}), errors)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 []"
