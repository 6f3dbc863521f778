"""Attacks on event ingest: each is refused at the door, with the field named.

Forged notices, payloads deep enough to break delivery, input that once made
the API answer 500, ids that let one producer's scope shadow another's, and
numbers or names JSON and the event log cannot carry.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
from flask_migrate import upgrade
from kombu import Connection, Producer
from sqlalchemy import select

from pulseboard.admin.notices import Notice, NoticeError
from pulseboard.events.envelope import InvalidEnvelope, parse
from pulseboard.events.producer import Producer as EventProducer
from pulseboard.events.topology import REASON_HEADER, Topology
from pulseboard.extensions import db
from pulseboard.models import Event

from ..pipeline import declared_topology, drain_queue, wait_for
from ..streaming import StreamClient, embedded_site, ingest, signed_in_session
from .ingest import post, queued, running_consumer, token_for

TICK = {"topic": "market.ticks", "type": "tick", "payload": {"price": 1}}


@pytest.fixture
def api(make_app):
    """The ingest API on the in-process bus, with queues of its own."""
    app = make_app(APP_SLUG=f"pbt-{secrets.token_hex(4)}")
    yield app
    queued(app)


@pytest.fixture
def market_token(api):
    return token_for(api, "market.*")


def nested(levels: int) -> str:
    """JSON text of a payload ``levels`` objects deep: {"a":{"a":{"a":1}}} is 3."""
    return '{"a":' * (levels - 1) + '{"a":1}' + "}" * (levels - 1)


def event_text(payload: str = '{"price":1}', **fields) -> str:
    envelope = {"topic": "market.ticks", "type": "tick", **fields}
    return json.dumps(envelope)[:-1] + f',"payload":{payload}}}'


# --- Forged notices -------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(tmp_path_factory.mktemp("forged-notices")) as site:
        yield site


def test_a_producer_token_cannot_forge_a_notice_and_no_socket_shows_one(site, clients):
    """The site's token may publish anywhere ("*"), yet never as an admin notice."""
    browser = signed_in_session(site["url"], "bob@example.com")
    bob = StreamClient(site["url"], browser)
    clients.append(bob)
    bob.call("subscribe", {"topics": ["market.ticks", "notices", "user.2"]})
    forged = {"level": "danger", "title": "Forged", "body": "Send your password"}
    headers = {"Authorization": f"Bearer {site['token']}", "Content-Type": "application/json"}
    for event, reserved in (
        ({"topic": "market.ticks", "type": "notice", "payload": forged}, "'notice'"),
        ({"topic": "user.2", "type": "Notice", "payload": forged}, "'Notice'"),
        ({"topic": "notices", "type": "headline", "payload": forged}, "'notices'"),
    ):
        refused = browser.post(
            f"{site['url']}/api/v1/events", data=json.dumps([event]), headers=headers, timeout=10
        )
        assert refused.status_code == 403, refused.text
        assert f"{reserved} is reserved for admin notices" in refused.json()["error"]
    # The marker comes after every forgery: once it is here, nothing forged is on its way.
    [marker] = ingest(site["url"], site["token"], [{**TICK, "payload": {"marker": True}}])
    bob.wait_for_events(1)
    assert [event["id"] for event in bob.events] == [marker]
    assert bob.notices == []
    assert "Forged" not in browser.get(f"{site['url']}/notices", timeout=10).text

    admin = signed_in_session(site["url"], "ada@example.com")
    page = admin.get(f"{site['url']}/admin/", timeout=10).text
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    sent = admin.post(
        f"{site['url']}/admin/notices",
        data={"csrf_token": csrf, "level": "info", "title": "Real", "target": "all"},
        timeout=10,
    )
    admin.close()
    assert "Notice sent." in sent.text
    wait_for(lambda: bob.notices, 10, message="the admin's notice")
    assert [notice["title"] for notice in bob.notices] == ["Real"]


@pytest.mark.parametrize("type_", ["notice", "NOTICE"])
def test_the_ingest_api_refuses_the_notice_type_whatever_the_token_scope(api, type_):
    response = post(api, [TICK, {**TICK, "type": type_}], token_for(api, "*"))
    assert response.status_code == 403
    assert response.get_json()["error"] == f"event 1: type {type_!r} is reserved for admin notices"
    assert queued(api) == []


# --- Payloads too deep to deliver -------------------------------------------------


def test_an_over_deep_payload_is_refused_by_the_api_naming_where(api, market_token):
    response = post(api, event_text(nested(500)), market_token)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error == f"event 0: payload{'.a' * 32}: nests deeper than 32 levels"
    assert queued(api) == []


def test_a_payload_at_the_depth_limit_is_accepted(api, market_token):
    assert post(api, event_text(nested(32)), market_token).status_code == 202


def test_the_consumer_dead_letters_an_over_deep_message_with_the_reason(make_app, rabbitmq_url):
    app = make_app(
        APP_SLUG=f"pbt-{secrets.token_hex(4)}", BROKER_URL=rabbitmq_url, EVENT_MAX_DEPTH="8"
    )
    topology = Topology.from_config(app.config)
    moment = "2026-11-26T14:03:07.123Z"
    with declared_topology(rabbitmq_url, topology), running_consumer(app) as consumer:
        with Connection(rabbitmq_url) as connection:
            for id_, levels in (("too-deep", 9), ("at-the-limit", 8)):
                Producer(connection).publish(
                    event_text(nested(levels), id=id_, timestamp=moment).encode(),
                    exchange=topology.exchange,
                    routing_key="market.ticks",
                    content_type="application/json",
                    content_encoding="binary",
                )
        wait_for(lambda: consumer.emitted and consumer.dead_lettered, 10, message="both handled")
        [letter] = drain_queue(rabbitmq_url, topology.dead_letter_queue)
    assert letter.headers[REASON_HEADER] == f"payload{'.a' * 8}: nests deeper than 8 levels"
    assert json.loads(letter.body)["id"] == "too-deep"
    assert [event["id"] for event in consumer.emitted] == ["at-the-limit"]


def test_the_python_api_and_the_cli_refuse_an_over_deep_payload(app, runner):
    payload = json.loads(nested(40))
    with pytest.raises(InvalidEnvelope, match="nests deeper than 32 levels"):
        EventProducer.from_config(app.config).publish("market.ticks", "tick", payload)
    result = runner.invoke(
        args=[
            "events",
            "publish",
            "--topic",
            "market.ticks",
            "--type",
            "t",
            "--payload",
            nested(40),
        ]
    )
    assert result.exit_code != 0
    assert "nests deeper than 32 levels" in result.output


# --- Input that once made the API answer 500 -----------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            event_text('{"a":[0,1,2,"\\ud800"]}'),
            "event 0: payload.a[3]: contains a lone UTF-16 surrogate, which is not text",
        ),
        (
            event_text('{"ok":{"\\udc00x":1}}'),
            "event 0: payload.ok['\\udc00x']: "
            "key contains a lone UTF-16 surrogate, which is not text",
        ),
        (
            event_text(key="\ud800"),
            "event 0: key: contains a lone UTF-16 surrogate, which is not text",
        ),
        (
            event_text(id="a", timestamp="0001-01-01T00:00:00+01:00"),
            "event 0: timestamp '0001-01-01T00:00:00+01:00' is outside the accepted range, "
            "1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z",
        ),
        (
            event_text(id="b", timestamp="9999-12-31T23:59:59-14:00"),
            "event 0: timestamp '9999-12-31T23:59:59-14:00' is outside the accepted range, "
            "1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z",
        ),
    ],
    ids=[
        "surrogate",
        "surrogate-key",
        "surrogate-in-key-field",
        "year-1",
        "year-10000",
    ],
)
def test_input_that_broke_the_api_is_a_400_naming_the_field(api, market_token, body, error):
    response = post(api, body, market_token)
    assert response.status_code == 400
    assert response.get_json()["error"] == error
    assert queued(api) == []


def test_json_nested_10000_deep_is_a_400_pointing_where_it_goes_too_deep(api, market_token):
    body = "[" + event_text(nested(10_000)) + "]"
    response = post(api, body, market_token)
    assert response.status_code == 400
    # The payload's 33rd object: past the 32 levels a payload may have.
    where = body.index('{"a":') + 32 * len('{"a":')
    assert response.get_json()["error"] == (
        f"body nests deeper than a payload's 32 levels (at character {where})"
    )
    assert queued(api) == []


# --- Event ids across scopes ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_the_same_event_id_on_two_scopes_is_stored_for_both(make_app, tmp_path, request, backend):
    url = (
        request.getfixturevalue("mysql_url")
        if backend == "mysql"
        else f"sqlite:///{tmp_path / 'ids.db'}"
    )
    app = make_app(schema=False, APP_SLUG=f"pbt-{secrets.token_hex(4)}", DATABASE_URL=url)
    with app.app_context():
        upgrade()
    event = {**TICK, "id": "evt-1", "timestamp": "2026-11-26T14:03:07.123Z"}
    sent = [
        ({**event, "topic": "market.ticks"}, token_for(app, "market.*")),
        ({**event, "topic": "other.feed"}, token_for(app, "other.*")),
        ({**event, "topic": "other.feed", "id": "EVT-1"}, token_for(app, "other.*")),
    ]
    with running_consumer(app) as consumer:
        for body, token in sent:
            assert post(app, body, token).status_code == 202
        wait_for(lambda: len(consumer.emitted) == 3, 10, message="three events stored")
    with app.app_context():
        rows = db.session.execute(select(Event.topic, Event.event_id).order_by(Event.seq)).all()
    assert [tuple(row) for row in rows] == [
        ("market.ticks", "evt-1"),
        ("other.feed", "evt-1"),
        ("other.feed", "EVT-1"),
    ]


# --- Numbers and names JSON and the log cannot carry -------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_refused_at_the_door(api, market_token, number):
    response = post(api, event_text(f'{{"price":{number}}}'), market_token)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("body is not JSON")
    assert queued(api) == []


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_from_python_callers(number):
    envelope = {**TICK, "id": "e", "timestamp": "2026-11-26T14:03:07Z", "payload": {"p": [number]}}
    with pytest.raises(
        InvalidEnvelope, match=re.escape(f"payload.p[0]: {number} is not a JSON number")
    ):
        parse(envelope)


@pytest.mark.parametrize(
    ("field", "value"),
    [("topic", "market.ticks\n"), ("type", "tick\n"), ("id", "evt-1\n")],
)
def test_a_trailing_newline_does_not_pass_validation(api, market_token, field, value):
    body = {**TICK, "id": "evt-1", "timestamp": "2026-11-26T14:03:07Z", field: value}
    response = post(api, body, market_token)
    assert response.status_code == 400
    assert field in response.get_json()["error"]
    assert queued(api) == []


def test_an_admin_notice_to_a_topic_with_a_trailing_newline_is_refused():
    with pytest.raises(NoticeError, match="is not a topic"):
        Notice("info", "Title", "", "topic", "market.ticks\n").topic()
