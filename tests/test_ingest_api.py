"""POST /api/v1/events: bearer tokens, topic scopes, every error status, real RabbitMQ."""

from __future__ import annotations

import json
import secrets

import pytest

from pulseboard.api.tokens import issue_token, revoke
from pulseboard.events.topology import Topology
from pulseboard.extensions import db
from pulseboard.models import ApiToken

from .pipeline import declared_topology, drain_queue


@pytest.fixture
def api(make_app, rabbitmq_url):
    slug = f"pbt-{secrets.token_hex(4)}"
    app = make_app(APP_SLUG=slug, BROKER_URL=rabbitmq_url, API_MAX_BATCH="5")
    with declared_topology(rabbitmq_url, Topology.from_config(app.config)):
        yield app
        producer = app.extensions.get("pulseboard.producer")
        if producer is not None:
            producer.close()


@pytest.fixture
def token(api):
    with api.app_context():
        _, clear = issue_token(db.session, "market feed", ["market.*"])
    return clear


def post(app, body, token=None, content_type="application/json", raw=False):
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if raw else json.dumps(body)
    return app.test_client().post("/api/v1/events", data=data, headers=headers)


def queued_bodies(app) -> list[dict]:
    queue = Topology.from_config(app.config).queue
    return [json.loads(m.body) for m in drain_queue(app.config["BROKER_URL"], queue)]


def test_accepted_events_are_confirmed_on_the_real_queue(api, token):
    response = post(
        api,
        [
            {"topic": "market.ticks", "type": "tick", "payload": {"price": 1}, "key": "ACME"},
            {
                "id": "producer-chosen-id",
                "topic": "market.news",
                "type": "headline",
                "timestamp": "2026-11-26T14:03:07.123Z",
                "payload": {"title": "Hello"},
            },
        ],
        token,
    )
    assert response.status_code == 202, response.get_json()
    ids = response.get_json()["accepted"]
    assert ids[1] == "producer-chosen-id"
    bodies = queued_bodies(api)
    assert [body["id"] for body in bodies] == ids
    assert bodies[0]["key"] == "ACME" and bodies[0]["timestamp"].endswith("Z")


def test_a_single_envelope_is_accepted_too_and_last_use_is_recorded(api, token):
    response = post(api, {"topic": "market.ticks", "type": "tick", "payload": {}}, token)
    assert response.status_code == 202
    with api.app_context():
        assert db.session.scalar(db.select(ApiToken)).last_used_at is not None


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer pbk_not-a-real-token", "Bearer something-else"],
)
def test_missing_or_wrong_tokens_get_401(api, token, authorization):
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    response = api.test_client().post(
        "/api/v1/events", data=json.dumps({"topic": "market.ticks"}), headers=headers
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in response.get_json()
    assert queued_bodies(api) == []


def test_a_revoked_token_stops_working_at_once(api, token):
    event = {"topic": "market.ticks", "type": "tick", "payload": {}}
    assert post(api, event, token).status_code == 202
    with api.app_context():
        revoke(db.session, db.session.scalar(db.select(ApiToken.id)))
    response = post(api, event, token)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unknown or revoked token"


def test_a_read_token_may_not_publish_even_to_its_own_topics(api):
    with api.app_context():
        _, reader = issue_token(db.session, "dashboard", ["market.*"], scope="read")
    response = post(api, {"topic": "market.ticks", "type": "tick", "payload": {}}, reader)
    assert response.status_code == 403
    assert "read token" in response.get_json()["error"]
    assert queued_bodies(api) == []


def test_a_topic_outside_the_token_scope_is_403_and_nothing_is_sent(api, token):
    response = post(
        api,
        [
            {"topic": "market.ticks", "type": "tick", "payload": {}},
            {"topic": "audit", "type": "login", "payload": {}},
        ],
        token,
    )
    assert response.status_code == 403
    assert response.get_json()["index"] == 1
    assert "audit" in response.get_json()["error"]
    assert queued_bodies(api) == []


@pytest.mark.parametrize(
    ("body", "raw", "fragment"),
    [
        (b"{nope", True, "not JSON"),
        (b"\xff\xfe", True, "not UTF-8"),
        ([], False, "no events"),
        ([{"topic": "market.ticks", "type": "tick"}], False, "payload"),
        ([{"topic": "market.ticks", "type": "tick", "payload": {}, "extra": 1}], False, "unknown"),
        ([{"topic": "Market Ticks", "type": "t", "payload": {}}], False, "topic"),
        ([{"topic": "market.ticks", "type": "t", "payload": {}}, "x"], False, "event 1"),
        ([{"id": "a", "topic": "market.ticks", "type": "t", "payload": {}}], False, "timestamp"),
    ],
)
def test_malformed_requests_get_400_naming_the_problem(api, token, body, raw, fragment):
    response = post(api, body, token, raw=raw)
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]
    assert queued_bodies(api) == []


def test_too_many_events_in_one_request_is_413(api, token):
    events = [{"topic": "market.ticks", "type": "t", "payload": {}}] * 6
    response = post(api, events, token)
    assert response.status_code == 413
    assert "limit is 5" in response.get_json()["error"]


def test_a_body_over_the_size_limit_is_413(make_app, rabbitmq_url):
    app = make_app(BROKER_URL=rabbitmq_url, MAX_CONTENT_LENGTH="2048")
    with app.app_context():
        _, clear = issue_token(db.session, "big", ["*"])
    payload = {"topic": "market.ticks", "type": "t", "payload": {"blob": "x" * 4000}}
    response = post(app, payload, clear)
    assert response.status_code == 413
    assert response.is_json


def test_a_non_json_content_type_is_415(api, token):
    response = post(api, "topic=market.ticks", token, content_type="text/plain", raw=True)
    assert response.status_code == 415


def test_the_rate_limit_answers_429_in_json(make_app, rabbitmq_url):
    app = make_app(
        APP_SLUG=f"pbt-{secrets.token_hex(4)}",
        BROKER_URL=rabbitmq_url,
        RATELIMIT_ENABLED="1",
        API_RATE_LIMIT="2/minute",
    )
    with app.app_context():
        _, clear = issue_token(db.session, "chatty", ["market.*"])
    event = {"topic": "market.ticks", "type": "tick", "payload": {}}
    with declared_topology(rabbitmq_url, Topology.from_config(app.config)):
        statuses = [post(app, event, clear).status_code for _ in range(3)]
        limited = post(app, event, clear)
        queued = queued_bodies(app)
        app.extensions["pulseboard.producer"].close()
    assert statuses == [202, 202, 429]
    assert limited.is_json and "error" in limited.get_json()
    assert len(queued) == 2


def test_the_broker_being_down_is_503_not_a_crash(make_app):
    from .conftest import closed_port

    app = make_app(BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed_port()}//")
    app.config["PUBLISH_MAX_RETRIES"] = 0
    with app.app_context():
        _, clear = issue_token(db.session, "t", ["*"])
    response = post(app, {"topic": "market.ticks", "type": "t", "payload": {}}, clear)
    assert response.status_code == 503
    assert "retry" in response.get_json()["error"]


def test_tokens_are_stored_hashed_and_listed_without_their_secret(app, runner):
    created = runner.invoke(args=["tokens", "create", "--name", "feed", "--topics", "market.*"])
    assert created.exit_code == 0, created.output
    clear = created.stdout.strip().splitlines()[-1]
    assert clear.startswith("pbk_")
    with app.app_context():
        stored = db.session.scalar(db.select(ApiToken))
        assert clear not in (stored.token_hash, stored.prefix)
        assert stored.topic_patterns == ["market.*"]
    listed = runner.invoke(args=["tokens", "list"])
    assert "feed" in listed.output and clear not in listed.output
    revoked = runner.invoke(args=["tokens", "revoke", str(stored.id)])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "revoked" in runner.invoke(args=["tokens", "list"]).output


def test_read_tokens_are_created_with_read_and_listed_with_their_scope(app, runner):
    created = runner.invoke(args=["tokens", "create", "--read", "market.*", "--name", "wall"])
    assert created.exit_code == 0, created.output
    with app.app_context():
        stored = db.session.scalar(db.select(ApiToken))
        assert (stored.scope, stored.topic_patterns) == ("read", ["market.*"])
    assert "\tread\twall\t" in runner.invoke(args=["tokens", "list"]).output


def test_a_token_is_either_a_producer_or_a_reader(app, runner):
    both = runner.invoke(
        args=["tokens", "create", "--name", "x", "--topics", "a.*", "--read", "a.*"]
    )
    assert both.exit_code != 0 and "either --topics" in both.output
