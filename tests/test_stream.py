"""/stream against gunicorn's gevent worker, over WebSocket and long-polling.

Embedded mode (in-process bus, SQLite): events enter through the ingest API,
pass the real consumer and event log, and reach real Socket.IO clients.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import socketio

from .pipeline import EventLog, wait_for
from .streaming import StreamClient, embedded_site, ingest, send_admin_notice, signed_in_session

TRANSPORTS = ["websocket", "polling"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    # A small queue cap, so a stuck client is found without megabytes of traffic.
    with embedded_site(tmp_path_factory.mktemp("stream"), STREAM_MAX_QUEUED_KB="256") as site:
        yield site


def connect(site, clients, email="bob@example.com", transport="websocket", **kwargs):
    browser = signed_in_session(site["url"], email)
    client = StreamClient(site["url"], browser, transport, **kwargs)
    clients.append(client)
    return client


def tick(price, key="ACME", type_="tick", topic="market.ticks"):
    return {"topic": topic, "type": type_, "payload": {"price": price}, "key": key}


def wait_for_id(client: StreamClient, event_id: str) -> None:
    """Until ``event_id`` has arrived: sent after what must not arrive, it proves that
    anything sent before it would have come by now."""
    wait_for(lambda: event_id in {e["id"] for e in client.events}, 10, message=event_id)


def send_last_notice(admin_browser, url: str, *clients: StreamClient) -> None:
    """A notice to everyone, waited for by each of ``clients``: one sent before it to
    someone who should not have it would have come by now."""
    counts = [len(client.notices) for client in clients]
    send_admin_notice(admin_browser, url, level="info", title="Last", target="all")
    for client, count in zip(clients, counts, strict=True):
        wait_for(lambda c=client, n=count: len(c.notices) > n, 10, message="the last notice")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_anonymous_sockets_are_refused(site, transport):
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            site["url"],
            namespaces=["/stream"],
            transports=[transport],
            headers={"Origin": site["url"]},
            wait_timeout=5,
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sockets_from_another_origin_are_refused(site, transport, clients):
    browser = signed_in_session(site["url"], "bob@example.com")
    with pytest.raises(socketio.exceptions.ConnectionError):
        StreamClient(site["url"], browser, transport, origin="https://evil.example")
    browser.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_subscribe_acks_and_events_arrive_in_seq_order(site, transport, clients):
    client = connect(site, clients, transport=transport)
    ack = client.call("subscribe", {"topics": ["market.ticks", "system.metrics"]})
    assert ack == {
        "ok": True,
        "subscribed": ["market.ticks", "system.metrics"],
        "denied": [],
        "replayed": 0,
        "gap": False,
    }
    ids = ingest(site["url"], site["token"], [tick(n) for n in range(5)])
    events = client.wait_for_events(5)
    assert [e["id"] for e in events] == ids
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert events[0]["payload"] == {"price": 0} and events[0]["key"] == "ACME"


def test_type_and_key_filters_apply_on_the_server(site, clients):
    client = connect(site, clients)
    everything = connect(site, clients)
    client.call("subscribe", {"topics": ["market.ticks"], "types": ["tick"], "keys": ["ACME"]})
    everything.call("subscribe", {"topics": ["market.ticks"]})
    ingest(
        site["url"],
        site["token"],
        [
            tick(1, key="GLOBX"),
            tick(2, type_="trade"),
            tick(3),
            tick(4, key="GLOBX"),
            tick(5),
        ],
    )
    everything.wait_for_events(5)
    # The room delivers in seq order: once a later matching tick is in, nothing filtered
    # out before it can still come.
    marker = ingest(site["url"], site["token"], [tick(6)])
    wait_for_id(client, marker[0])
    assert [e["payload"]["price"] for e in client.events] == [3, 5, 6]


def test_forbidden_topics_are_denied_and_never_joined(site, clients):
    client = connect(site, clients)
    ack = client.call("subscribe", {"topics": ["market.ticks", "audit", "user.1", "secret.stuff"]})
    assert ack["ok"] and ack["subscribed"] == ["market.ticks"]
    assert ack["denied"] == ["audit", "user.1", "secret.stuff"]
    # An admin who may read them proves the forbidden events were really sent.
    witness = connect(site, clients, email="ada@example.com")
    witness.call("subscribe", {"topics": ["audit", "user.1"]})
    ingest(site["url"], site["token"], [tick(1, topic="audit"), tick(2, topic="user.1"), tick(3)])
    witness.wait_for_events(2)
    marker = ingest(site["url"], site["token"], [tick(4)])
    wait_for_id(client, marker[0])
    assert [e["payload"]["price"] for e in client.events] == [3, 4]


def test_admins_may_read_admin_topics_and_users_their_own(site, clients):
    admin = connect(site, clients, email="ada@example.com")
    ack = admin.call("subscribe", {"topics": ["audit", "user.1"]})
    assert ack["subscribed"] == ["audit", "user.1"] and ack["denied"] == []


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ("market.ticks", "takes an object"),
        ({"topics": "market.ticks"}, "list of strings"),
        ({"topics": []}, "at least one"),
        ({"topics": [1, 2]}, "list of strings"),
        ({"topics": ["t"] * 65}, "at most 64"),
        ({"topics": ["market.ticks"], "colour": "red"}, "unknown field"),
        ({"topics": ["market.ticks"], "since": -1}, "since must be"),
        ({"topics": ["market.ticks"], "since": "5"}, "since must be"),
        ({"topics": ["market.ticks"], "since": 10**12}, "ahead of the log"),
        ({"topics": ["market.ticks"], "types": ["no spaces allowed"]}, "types must be"),
    ],
)
def test_malformed_subscriptions_get_an_error_ack(site, clients, payload, error):
    client = connect(site, clients)
    ack = client.call("subscribe", payload)
    assert ack["ok"] is False and error in ack["error"]
    assert client.call("subscribe", {"topics": ["market.ticks"]})["ok"]  # still usable


def test_unsubscribe_stops_delivery(site, clients):
    client = connect(site, clients)
    client.call("subscribe", {"topics": ["market.ticks", "system.metrics"]})
    ack = client.call("unsubscribe", {"topics": ["market.ticks"]})
    assert ack == {"ok": True, "subscribed": ["system.metrics"]}
    witness = connect(site, clients)
    witness.call("subscribe", {"topics": ["market.ticks"]})
    ingest(site["url"], site["token"], [tick(1), tick(2, topic="system.metrics", type_="host")])
    witness.wait_for_events(1)  # the tick went out to its room
    marker = ingest(site["url"], site["token"], [tick(3, topic="system.metrics", type_="host")])
    wait_for_id(client, marker[0])
    assert [e["topic"] for e in client.events] == ["system.metrics", "system.metrics"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reconnecting_with_since_replays_exactly_the_missed_events(site, clients, transport):
    first = connect(site, clients, transport=transport)
    first.call("subscribe", {"topics": ["market.ticks"]})
    seen = ingest(site["url"], site["token"], [tick(n) for n in range(3)])
    first.wait_for_events(3)
    last_seq = first.events[-1]["seq"]
    first.close()

    missed = ingest(site["url"], site["token"], [tick(n) for n in range(3, 7)])
    log = EventLog(site["db"])
    wait_for(lambda: {r[1] for r in log.rows()} >= set(missed), 10, message="stored")
    log.close()

    again = StreamClient(site["url"], first.browser, transport)
    clients.append(again)
    ack = again.call("subscribe", {"topics": ["market.ticks"], "since": last_seq})
    assert ack["ok"] and ack["replayed"] == 4 and ack["gap"] is False
    live = ingest(site["url"], site["token"], [tick(7)])
    again.wait_for_events(5)
    marker = ingest(site["url"], site["token"], [tick(8)])  # after any late duplicate
    wait_for_id(again, marker[0])
    assert [e["id"] for e in again.events] == missed + live + marker
    assert not set(seen) & {e["id"] for e in again.events}


def test_since_in_the_handshake_is_used_by_the_next_subscribe(site, clients):
    first = connect(site, clients)
    first.call("subscribe", {"topics": ["market.ticks"]})
    ingest(site["url"], site["token"], [tick(1)])
    first.wait_for_events(1)
    since = first.events[-1]["seq"]
    missed = ingest(site["url"], site["token"], [tick(2)])
    log = EventLog(site["db"])
    wait_for(lambda: missed[0] in {r[1] for r in log.rows()}, 10, message="stored")
    log.close()
    again = StreamClient(site["url"], first.browser, auth={"since": since})
    clients.append(again)
    assert again.call("subscribe", {"topics": ["market.ticks"]})["replayed"] == 1
    assert [e["id"] for e in again.wait_for_events(1)] == missed


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_signing_out_over_http_disconnects_the_socket(site, clients, transport):
    client = connect(site, clients, transport=transport)
    client.call("subscribe", {"topics": ["market.ticks"]})
    page = client.browser.get(f"{site['url']}/settings/", timeout=10).text
    token = __import__("re").search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    client.browser.post(f"{site['url']}/auth/logout", data={"csrf_token": token}, timeout=10)
    assert client.disconnected.wait(2), "socket still open a second after sign-out"


def test_a_socket_id_cannot_be_used_from_another_session(site, clients):
    import requests

    victim = connect(site, clients, transport="polling")
    victim.call("subscribe", {"topics": ["market.ticks"]})
    eio_sid = victim.client.eio.sid
    thief = signed_in_session(site["url"], "ada@example.com")
    stolen = thief.get(
        f"{site['url']}/socket.io/?EIO=4&transport=polling&sid={eio_sid}",
        headers={"Origin": site["url"]},
        timeout=5,
    )
    thief.close()
    assert stolen.status_code == 403
    anonymous = requests.get(
        f"{site['url']}/socket.io/?EIO=4&transport=polling&sid={eio_sid}",
        headers={"Origin": site["url"]},
        timeout=5,
    )
    assert anonymous.status_code == 403
    ingest(site["url"], site["token"], [tick(1)])
    assert victim.wait_for_events(1)  # the owner is unaffected


def test_polling_responses_carry_their_length_and_are_not_chunked(site):
    """A poll is one body Engine.IO encodes whole: sent with its length, in two writes
    (headers, body) rather than three chunks, and readable by an HTTP/1.0 proxy."""
    browser = signed_in_session(site["url"], "bob@example.com")
    base = f"{site['url']}/socket.io/?EIO=4&transport=polling"
    origin = {"Origin": site["url"]}
    try:
        handshake = browser.get(base, headers=origin, timeout=5)
        assert handshake.status_code == 200 and handshake.content.startswith(b"0{")
        sid = json.loads(handshake.content[1:])["sid"]
        joined = browser.post(f"{base}&sid={sid}", data="40/stream,", headers=origin, timeout=5)
        assert joined.status_code == 200
        poll = browser.get(f"{base}&sid={sid}", headers=origin, timeout=5)
        assert poll.status_code == 200 and poll.content.startswith(b"40/stream,{")
        for response in (handshake, joined, poll):
            assert "Transfer-Encoding" not in response.headers
            assert int(response.headers["Content-Length"]) == len(response.content)
    finally:
        browser.close()


def test_a_flood_of_client_messages_is_refused_then_disconnected(site, clients):
    client = connect(site, clients)
    answers = [client.call("unsubscribe", {"topics": ["x"]}) for _ in range(30)]
    refused = [a for a in answers if not a["ok"]]
    assert refused and "too many requests" in refused[0]["error"]
    for _ in range(80):
        if not client.client.connected:
            break
        try:
            client.client.emit("unsubscribe", {"topics": ["x"]}, namespace="/stream")
        except socketio.exceptions.BadNamespaceError:
            break
    assert client.disconnected.wait(5), "a flooding client stayed connected"
    other = connect(site, clients)
    assert other.call("subscribe", {"topics": ["market.ticks"]})["ok"]


def test_an_oversized_message_closes_only_that_connection(site, clients):
    client = connect(site, clients)
    # python-engineio's client forgets its WebSocket when the server closes it; keep
    # hold of it to close our end (else a ResourceWarning surfaces in a later test).
    websocket = client.client.eio.ws
    client.client.emit("subscribe", {"topics": ["x" * 50_000]}, namespace="/stream")
    assert client.disconnected.wait(5)
    websocket.shutdown()
    other = connect(site, clients)
    assert other.call("subscribe", {"topics": ["market.ticks"]})["ok"]


def test_notices_reach_the_targeted_users_as_notice_events(site, clients):
    bob = connect(site, clients)
    ada = connect(site, clients, email="ada@example.com")
    bob.call("subscribe", {"topics": ["notices", "user.2"]})
    ada.call("subscribe", {"topics": ["notices", "user.1"]})
    notice = {"level": "warning", "title": "Maintenance", "body": "At noon"}
    send_admin_notice(ada.browser, site["url"], **notice, target="all")
    send_admin_notice(
        ada.browser, site["url"], **notice | {"title": "For Bob"}, target="user", to="2"
    )
    wait_for(lambda: len(bob.notices) == 2, 10, message="bob's notices")
    wait_for(lambda: len(ada.notices) == 1, 10, message="ada's notice")
    send_last_notice(ada.browser, site["url"], bob, ada)
    assert [n["title"] for n in bob.notices] == ["Maintenance", "For Bob", "Last"]
    assert [n["title"] for n in ada.notices] == ["Maintenance", "Last"]
    assert set(bob.notices[0]) == {"id", "level", "title", "body", "created_at"}


def admin_form_post(browser, url, **fields):
    page = browser.get(f"{url}/admin/", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    return browser.post(f"{url}/admin/notices", data={"csrf_token": token, **fields}, timeout=10)


def test_admin_notices_from_the_page_reach_everyone_a_topic_or_one_user(site, clients):
    ada = connect(site, clients, email="ada@example.com")
    bob = connect(site, clients)
    ada.call("subscribe", {"topics": ["notices", "user.1"]})
    bob.call("subscribe", {"topics": ["notices", "user.2", "market.ticks"]})
    admin = ada.browser
    for fields in (
        {"level": "info", "title": "To all", "body": "Hello", "target": "all"},
        {"level": "warning", "title": "To ticks", "target": "topic", "to": "market.ticks"},
        {"level": "success", "title": "To Bob", "target": "user", "to": "bob@example.com"},
    ):
        sent = admin_form_post(admin, site["url"], **fields)
        assert "Notice sent." in sent.text, fields
    wait_for(lambda: len(bob.notices) == 3, 10, message="bob's three notices")
    wait_for(lambda: len(ada.notices) == 1, 10, message="ada's notice")
    send_last_notice(admin, site["url"], bob, ada)
    assert [n["title"] for n in bob.notices] == ["To all", "To ticks", "To Bob", "Last"]
    assert [n["title"] for n in ada.notices] == ["To all", "Last"]
    listed = bob.browser.get(f"{site['url']}/notices", timeout=10).text
    assert "To Bob" in listed and "To all" in listed
    assert "To Bob" not in ada.browser.get(f"{site['url']}/notices", timeout=10).text


def test_a_notice_to_an_unknown_user_is_refused_clearly(site, clients):
    admin = signed_in_session(site["url"], "ada@example.com")
    sent = admin_form_post(
        admin, site["url"], level="info", title="x", target="user", to="nobody@example.com"
    )
    admin.close()
    assert "Notice not sent: no user" in sent.text


def test_members_cannot_send_notices(site):
    member = signed_in_session(site["url"], "bob@example.com")
    page = member.get(f"{site['url']}/settings/", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    refused = member.post(
        f"{site['url']}/admin/notices",
        data={"csrf_token": token, "level": "info", "title": "x", "target": "all"},
        timeout=10,
    )
    member.close()
    assert refused.status_code == 403


def test_admins_broadcast_over_the_admin_namespace_and_members_are_refused(site, clients):
    listener = connect(site, clients)
    listener.call("subscribe", {"topics": ["notices"]})
    admin_browser = signed_in_session(site["url"], "ada@example.com")
    admin = socketio.Client(reconnection=False, http_session=admin_browser)
    admin.connect(site["url"], namespaces=["/admin"], transports=["websocket"], wait_timeout=10)
    ack = admin.call(
        "broadcast", {"level": "danger", "title": "Over the socket"}, namespace="/admin", timeout=10
    )
    bad = admin.call("broadcast", {"level": "purple", "title": "x"}, namespace="/admin", timeout=10)
    admin.disconnect()
    admin_browser.close()
    assert ack["ok"] and ack["id"]
    assert bad == {"ok": False, "error": "level must be one of info, success, warning, danger"}
    wait_for(lambda: listener.notices, 10, message="the broadcast")
    assert listener.notices[0]["title"] == "Over the socket"

    member_browser = signed_in_session(site["url"], "bob@example.com")
    member = socketio.Client(reconnection=False, http_session=member_browser)
    with pytest.raises(socketio.exceptions.ConnectionError):
        member.connect(site["url"], namespaces=["/admin"], transports=["websocket"], wait_timeout=5)
    member_browser.close()


def test_a_client_that_stops_reading_is_dropped_and_others_keep_up(site, clients):
    """Engine.IO would queue for a socket that never reads; past the cap it is dropped."""
    import websocket

    browser = signed_in_session(site["url"], "bob@example.com")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    port = site["url"].rsplit(":", 1)[1]
    stuck = websocket.create_connection(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
        header=[f"Cookie: {cookie}"],
        origin=site["url"],
        timeout=5,
        # A small receive window, so the kernel's buffers do not absorb the flood.
        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),),
    )
    assert stuck.recv().startswith("0")  # Engine.IO open
    stuck.send("40/stream,")
    assert stuck.recv().startswith("40/stream")
    stuck.send('42/stream,1["subscribe",{"topics":["market.ticks"]}]')
    # ... and from here on it never reads again.

    healthy = connect(site, clients)
    healthy.call("subscribe", {"topics": ["system.metrics"]})
    blob = "x" * 4000
    for start in range(0, 3000, 200):  # 12 MB of ticks for the stuck client
        ingest(
            site["url"],
            site["token"],
            [tick(n, key="BIG") | {"payload": {"blob": blob}} for n in range(start, start + 200)],
        )
    wait_for(
        lambda: "is not reading (queue full); disconnecting it" in Path(site["log"]).read_text(),
        20,
        message="the stuck socket dropped",
    )
    metrics = ingest(
        site["url"],
        site["token"],
        [tick(n, topic="system.metrics", type_="host") for n in range(5)],
    )
    assert [e["id"] for e in healthy.wait_for_events(5)] == metrics
    stuck.sock.close()
    browser.close()
