"""GET /api/v1/events: the event log page by page, under real gunicorn on SQLite (embedded
bus) and on MariaDB (RabbitMQ and the consumer), read as a dashboard reads it, and
joined to the live stream with nothing lost or repeated."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
import requests

from pulseboard.api.tokens import issue_token
from pulseboard.events import store
from pulseboard.events.envelope import format_timestamp, new_envelope
from pulseboard.events.history import HistoryQuery, read_page
from pulseboard.extensions import db
from pulseboard.stream.state import TopicFilter

from .pipeline import EventLog, wait_for
from .servers import base_env, free_port, run_cli
from .sse_client import EventStream, is_marker, marker, read_token
from .streaming import StreamClient, embedded_site, ingest, rabbitmq_site, signed_in_session

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def site(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"history-{request.param}")
    if request.param == "sqlite":
        with embedded_site(tmp) as running:
            env = base_env(DATABASE_URL=running["db"], TMPDIR=str(tmp))
            yield {**running, "env": env, "log": EventLog(running["db"])}
        return
    rabbitmq_url = request.getfixturevalue("rabbitmq_url")
    mysql_server = request.getfixturevalue("mysql_server")
    with rabbitmq_site(tmp, rabbitmq_url, mysql_server, [free_port()]) as running:
        env = running["env"]
        created = run_cli("tokens", "create", "--name", "tests", "--topics", "*", env=env)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
        yield {
            "url": running["urls"][0],
            "env": env,
            "token": token,
            "log": EventLog(env["DATABASE_URL"]),
        }


def publish(site, events: list[dict]) -> list[int]:
    """Ingest ``events`` and wait until the log holds them; their seqs, in order."""
    ids = ingest(site["url"], site["token"], events)
    wanted = [(event["topic"], event_id) for event, event_id in zip(events, ids, strict=True)]

    def stored():
        seqs = {(topic, event_id): seq for seq, event_id, topic in site["log"].rows()}
        return [seqs[key] for key in wanted] if all(key in seqs for key in wanted) else None

    return wait_for(stored, 15, message=f"{len(events)} events stored")


def log_seqs(site, *topics: str) -> list[int]:
    return [seq for seq, _, topic in site["log"].rows() if topic in topics]


def get(site, query: str | dict, token=None, browser=None) -> requests.Response:
    query = urlencode(query) if isinstance(query, dict) else query
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return (browser or requests).get(
        f"{site['url']}/api/v1/events?{query}", headers=headers, timeout=10
    )


def read_all(site, query: str | dict, token) -> tuple[list[dict], list[dict]]:
    """Every page, following ``next`` as a client does: (events, page bodies)."""
    first = get(site, query, token)
    assert first.status_code == 200, first.text
    bodies = [first.json()]
    while bodies[-1]["next"]:
        assert len(bodies) < 200, "paging does not end"
        response = requests.get(
            site["url"] + bodies[-1]["next"],
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    return [event for body in bodies for event in body["events"]], bodies


def events_on(topic: str, count: int, **fields) -> list[dict]:
    return [{"topic": topic, "type": "t", "payload": {"n": n}, **fields} for n in range(count)]


def test_pages_oldest_first_hold_every_event_once_and_say_where_to_go_on(site):
    a, b, other = "hist.page.a", "hist.page.b", "hist.page.other"
    publish(site, [e for n in range(40) for e in (events_on(a, 1)[0], events_on(b, 1)[0])])
    publish(site, events_on(other, 10) + events_on(a, 5))
    _, token = read_token(site, "hist.*")

    events, bodies = read_all(site, f"topics={a},{b}&limit=7", token)

    expected = log_seqs(site, a, b)
    assert [event["seq"] for event in events] == expected
    assert all(len(body["events"]) <= 7 and body["order"] == "asc" for body in bodies)
    assert bodies[0]["more"] and bodies[0]["cursor"] == {"after": bodies[0]["events"][-1]["seq"]}
    assert not bodies[-1]["more"] and bodies[-1]["cursor"] is None
    assert bodies[-1]["newest"] == expected[-1]
    # prev is the event before on its topic in the log, as the stream says it.
    for topic in (a, b):
        on_topic = [event for event in events if event["topic"] == topic]
        assert [event["prev"] for event in on_topic] == [0] + [e["seq"] for e in on_topic[:-1]]
    # A seq range: strictly between after and before.
    between, _ = read_all(site, f"topics={a},{b}&after={expected[10]}&before={expected[20]}", token)
    assert [event["seq"] for event in between] == expected[11:20]


def test_latest_first_pages_walk_back_to_the_oldest(site):
    topic = "hist.desc"
    publish(site, events_on(topic, 23))
    _, token = read_token(site, topic)

    events, bodies = read_all(site, f"topic={topic}&order=desc&limit=5", token)

    expected = log_seqs(site, topic)
    assert [event["seq"] for event in events] == expected[::-1]
    assert [event["seq"] for event in bodies[0]["events"]] == expected[:-6:-1]
    assert bodies[0]["newest"] == expected[-1]
    assert bodies[0]["cursor"] == {"before": expected[-5]} and bodies[0]["order"] == "desc"


def test_types_and_keys_filter_as_the_stream_does_and_events_are_what_it_sends(site):
    topic = "hist.filter"
    _, token = read_token(site, topic)
    stream = EventStream(site, f"topics={topic}&types=tick&keys=AAPL,MSFT", token=token)
    tick = {"topic": topic, "type": "tick"}
    publish(
        site,
        [
            {**tick, "key": "AAPL", "payload": {"n": 1}},
            {**tick, "key": "aapl", "payload": {"n": 2}},  # keys compare with case, as live
            {**tick, "type": "Tick", "key": "AAPL", "payload": {"n": 3}},
            {**tick, "type": "quote", "key": "MSFT", "payload": {"n": 4}},
            {**tick, "payload": {"n": 5}},
            {**tick, "key": "MSFT", "payload": {"n": 6}},
            {**tick, "key": "IBM", "payload": {"n": 7}},
            marker("filters", topic=topic, key="AAPL"),
        ],
    )
    live = stream.read_until(is_marker("filters"))
    stream.close()

    events, _ = read_all(site, f"topics={topic}&types=tick&keys=AAPL,MSFT&limit=1", token)

    assert [event["payload"] for event in events] == [{"n": 1}, {"n": 6}, {"marker": "filters"}]
    assert events == live  # the same envelopes, seq and prev included
    everything = log_seqs(site, topic)
    assert [event["prev"] for event in events] == [
        everything[everything.index(event["seq"]) - 1] if event["seq"] != everything[0] else 0
        for event in events
    ]


def test_a_time_range_selects_by_the_event_timestamp(site):
    topic = "hist.time"
    # Stored in this order; their timestamps are not.
    minutes = [5, 1, 9, 3, 7, 2, 8, 0, 6, 4]
    seqs = publish(
        site,
        [
            {
                "id": f"time-{m}",
                "topic": topic,
                "type": "t",
                "timestamp": format_timestamp(T0 + timedelta(minutes=m)),
                "payload": {"minute": m},
            }
            for m in minutes
        ],
    )
    _, token = read_token(site, topic)
    inside = [seq for seq, m in zip(seqs, minutes, strict=True) if 2 <= m < 7]
    since, until = T0 + timedelta(minutes=2), T0 + timedelta(minutes=7)

    ascending, _ = read_all(
        site, {"topic": topic, "since": since.isoformat(), "until": until.isoformat()}, token
    )
    paris = timezone(timedelta(hours=1))
    in_paris = {
        "since": since.astimezone(paris).isoformat(),
        "until": until.astimezone(paris).isoformat(),
    }
    descending, pages = read_all(
        site, {"topic": topic, "order": "desc", "limit": 2, **in_paris}, token
    )
    from_only, _ = read_all(site, {"topic": topic, "since": "2030-01-01T00:08:00Z"}, token)

    assert [event["seq"] for event in ascending] == inside
    assert [event["seq"] for event in descending] == inside[::-1] and len(pages) == 3
    assert sorted(event["payload"]["minute"] for event in from_only) == [8, 9]


def test_a_topic_the_reader_may_not_read_refuses_the_whole_request(site):
    publish(site, [{"topic": "audit", "type": "login", "payload": {"who": "ada"}}])
    publish(site, [marker("acl")])
    bob = signed_in_session(site["url"], "bob@example.com")

    refused = get(site, "topics=market.ticks,audit", browser=bob)
    allowed = get(site, "topics=market.ticks&order=desc", browser=bob)
    admin = get(site, "topics=audit", browser=signed_in_session(site["url"], "ada@example.com"))
    _, market_reader = read_token(site, "market.*")
    refused_token = get(site, "topics=market.ticks,system.metrics", market_reader)

    assert refused.status_code == 403 and refused.json()["error"] == "may not read: audit"
    assert "events" not in refused.json()
    assert allowed.status_code == 200 and allowed.json()["events"]
    assert {event["topic"] for event in allowed.json()["events"]} == {"market.ticks"}
    assert [event["payload"] for event in admin.json()["events"]] == [{"who": "ada"}]
    assert refused_token.status_code == 403
    assert refused_token.json()["error"] == "may not read: system.metrics"


def test_only_a_live_read_token_or_a_session_may_read(site):
    token_id, reader = read_token(site, "market.*")
    assert get(site, "topics=market.ticks", reader).status_code == 200
    assert run_cli("tokens", "revoke", str(token_id), env=site["env"]).returncode == 0

    revoked = get(site, "topics=market.ticks", reader)
    producer = get(site, "topics=market.ticks", site["token"])
    anonymous = get(site, "topics=market.ticks")
    unknown = get(site, "topics=market.ticks", "pbk_not-a-token")

    assert revoked.status_code == 401 and revoked.json()["error"] == "unknown or revoked token"
    assert producer.status_code == 403 and "producer token" in producer.json()["error"]
    assert anonymous.status_code == 401 and "sign in" in anonymous.json()["error"]
    assert unknown.status_code == 401


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("", "topics"),
        ("types=tick", "topics"),
        ("topics=market.ticks&top=1", "unknown parameter(s): top"),
        ("topics=market.ticks&topic=market.ticks", "topics or topic"),
        ("topics=market.ticks&limit=5&limit=6", "once: limit"),
        ("topics=Market Ticks", "not a topic name"),
        ("topics=market.ticks&types=not a type", "types"),
        ("topics=market.ticks&after=-1", "after must be a seq"),
        ("topics=market.ticks&before=1e3", "before must be a seq"),
        ("topics=market.ticks&after=5&before=5", "before must be greater than after"),
        ("topics=market.ticks&after=999999999", "ahead of the log"),
        ("topics=market.ticks&since=2030-01-01T00:00:00", "needs a zone"),
        ("topics=market.ticks&since=yesterday", "ISO 8601"),
        ("topics=market.ticks&since=2030-01-01T00:00:00 01:00", "%2B"),
        ("topics=market.ticks&since=2030-01-02T00:00Z&until=2030-01-01T00:00Z", "until must be"),
        ("topics=market.ticks&limit=0", "limit must be"),
        ("topics=market.ticks&limit=1001", "limit must be"),
        ("topics=market.ticks&order=sideways", "order must be asc or desc"),
    ],
)
def test_bad_parameters_get_400_naming_the_problem(site, query, fragment):
    _, token = read_token(site, "*")
    response = get(site, query, token)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


@pytest.mark.parametrize("live", ["socketio", "sse"])
def test_history_then_live_from_newest_gives_every_event_once(site, live, clients):
    """A producer publishes all along; the client reads the history page by page, then
    subscribes from the last page's newest seq, as the dashboard does."""
    topics = (f"hist.seam.{live}.a", f"hist.seam.{live}.b")
    _, token = read_token(site, "hist.*")
    producing = threading.Thread(target=produce, args=(site, topics, 120))
    producing.start()
    try:
        wait_for(lambda: log_seqs(site, *topics), 10, message="the first events")
        history, bodies = read_all(site, f"topics={','.join(topics)}&limit=15", token)
        newest = bodies[-1]["newest"]
        if live == "socketio":
            client = StreamClient(site["url"], None, auth={"token": token})
            clients.append(client)
            ack = client.call("subscribe", {"topics": list(topics), "since": newest})
            assert ack["ok"], ack
            received = client.events
        else:
            last_event_id = ",".join(f"{topic}={newest}" for topic in topics)
            stream = EventStream(
                site, f"topics={','.join(topics)}", token=token, last_event_id=last_event_id
            )
    finally:
        producing.join()
    # A marker on each topic: topics arrive in separate messages, so the one topic's
    # marker can come before the other topic's last events.
    publish(site, [marker("seam", topic=topic) for topic in topics])

    def both_markers(events) -> bool:
        return {e["topic"] for e in events if is_marker("seam")(e)} == set(topics)

    if live == "socketio":
        wait_for(lambda: both_markers(received), 15, message="both markers")
    else:
        received = stream.read_until(lambda _: both_markers(stream.events))
        stream.close()

    seqs = [event["seq"] for event in history + received]
    assert len(seqs) == len(set(seqs)), "an event came twice"
    assert sorted(seqs) == log_seqs(site, *topics)
    assert any(event["seq"] < newest for event in history) and len(received) > 1


def produce(site, topics, rounds: int) -> None:
    for index in range(rounds):
        ingest(
            site["url"],
            site["token"],
            [{"topic": topic, "type": "t", "payload": {"i": index}} for topic in topics],
        )
        time.sleep(0.01)


def test_gap_says_retention_pruned_past_after(site):
    # Last: it prunes the shared log.
    topic = "hist.gap"
    seqs = publish(site, events_on(topic, 8))
    pruned = run_cli("events", "prune", env={**site["env"], "EVENT_RETENTION_COUNT": "3"})
    assert pruned.returncode == 0, pruned.stderr
    _, token = read_token(site, topic)

    behind = get(site, f"topic={topic}&after={seqs[0]}", token).json()
    whole = get(site, f"topic={topic}", token).json()

    assert behind["gap"] and [event["seq"] for event in behind["events"]] == seqs[-3:]
    assert not whole["gap"]


# The paging itself, on both databases, against every answer worked out by hand: a
# small budget and limits make the walks stop short, merge and carry bounds.


@pytest.fixture(params=["sqlite", "mariadb"])
def log_app(request, make_app):
    if request.param == "sqlite":
        return make_app()
    return make_app(DATABASE_URL=request.getfixturevalue("mysql_url"))


def test_pages_join_exactly_whatever_the_query(log_app):
    chance = random.Random(7)
    topics, keys, types = ["p.a", "p.b", "p.c"], ["K1", "K2", "k1", None], ["tick", "quote"]
    envelopes = []
    for _ in range(240):
        envelope = new_envelope(
            chance.choice(topics), chance.choice(types), {}, chance.choice(keys)
        )
        envelopes.append(replace(envelope, timestamp=T0 + timedelta(seconds=chance.randrange(600))))
    with log_app.app_context():
        for start in range(0, len(envelopes), 100):
            store.store_batch(db.session, envelopes[start : start + 100])
            db.session.commit()
        log = [
            e.as_dict() | {"at": e.envelope.timestamp}
            for e in store.events_since(db.session, 0, topics, 1000).events
        ]
        for _ in range(30):
            query = random_query(chance, topics, keys, types)
            # prev: the event before on its topic in the whole log, whatever the filter.
            expected = [(e["seq"], e["prev"]) for e in log if matches(query, e)]
            got = [(e.seq, e.prev) for e in read_all_pages(query)]
            assert got == (expected[::-1] if query.descending else expected), query
        db.session.remove()


def random_query(chance, topics, keys, types) -> HistoryQuery:
    picked_keys = chance.choice(
        [None, {"K1"}, {"K1", "K2"}, {"k1", "K2"}, {f"x{n}" for n in range(30)} | {"K2"}]
    )
    since = T0 + timedelta(seconds=chance.randrange(300)) if chance.random() < 0.4 else None
    until = T0 + timedelta(seconds=chance.randrange(300, 600)) if chance.random() < 0.4 else None
    return HistoryQuery(
        topics=chance.sample(topics, chance.randint(1, 3)),
        filter=TopicFilter(
            types=chance.choice([None, frozenset({"tick"}), frozenset(types)]),
            keys=frozenset(picked_keys) if picked_keys else None,
        ),
        after=chance.choice([None, None, chance.randrange(120)]),
        since=since,
        until=until,
        limit=chance.randint(2, 12),
        descending=chance.random() < 0.5,
    )


def matches(query: HistoryQuery, event: dict) -> bool:
    return (
        event["topic"] in query.topics
        and query.filter.accepts(event)
        and (query.after is None or event["seq"] > query.after)
        and (query.since is None or event["at"] >= query.since)
        and (query.until is None or event["at"] < query.until)
    )


def read_all_pages(query: HistoryQuery) -> list:
    events = []
    for _ in range(500):
        page = read_page(db.session, query, budget=7)
        events += page.events
        if page.cursor is None:
            return events
        if query.descending:
            query = replace(query, before=page.cursor, after=page.bounds.get("after", query.after))
        else:
            query = replace(
                query, after=page.cursor, before=page.bounds.get("before", query.before)
            )
    raise AssertionError(f"paging does not end: {query}")


def test_a_reader_over_the_api_rate_limit_gets_429_and_others_go_on(make_app):
    app = make_app(RATELIMIT_ENABLED="1", API_RATE_LIMIT="2/minute")
    with app.app_context():
        _, first = issue_token(db.session, "first", ["market.*"], scope="read")
        _, second = issue_token(db.session, "second", ["market.*"], scope="read")
    client = app.test_client()

    def read(token):
        return client.get(
            "/api/v1/events?topics=market.ticks", headers={"Authorization": f"Bearer {token}"}
        )

    answers = [read(first).status_code for _ in range(3)]

    assert answers == [200, 200, 429]
    assert read(first).get_json()["status"] == 429
    assert read(second).status_code == 200
