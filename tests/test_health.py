"""Probes: /healthz never touches a dependency; /readyz checks the real ones with deadlines."""

import time

from .conftest import closed_port


def test_healthz_answers_without_a_database(make_app):
    # Nothing listens on this port: any attempt to reach the database would fail.
    app = make_app(
        schema=False, DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:{closed_port()}/nowhere"
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_ignores_a_session_cookie_so_it_never_reads_the_session_store(make_app):
    app = make_app(
        schema=False, DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:{closed_port()}/nowhere"
    )
    client = app.test_client()
    client.set_cookie("pulseboard_session", "some-session-id")
    assert client.get("/healthz").status_code == 200


def test_readyz_is_ready_with_the_real_database_and_broker(make_app, mysql_url, rabbitmq_url):
    app = make_app(DATABASE_URL=mysql_url, BROKER_URL=rabbitmq_url)
    response = app.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["backend"] == "mysql"
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["broker"]["transport"] == "amqp"


def test_readyz_is_ready_when_one_node_of_a_cluster_answers(make_app, mysql_url, rabbitmq_url):
    down = f"amqp://guest:secret@127.0.0.1:{closed_port()}//"
    app = make_app(DATABASE_URL=mysql_url, BROKER_URL=f"{down};{down};{rabbitmq_url}")
    response = app.test_client().get("/readyz")
    broker = response.get_json()["checks"]["broker"]
    assert response.status_code == 200, broker
    assert broker["node"] == rabbitmq_url.replace(":guest@", ":**@")  # the one that answered


def test_readyz_is_503_when_the_database_is_down(make_app, rabbitmq_url):
    port = closed_port()
    app = make_app(
        schema=False,
        DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:{port}/nowhere",
        BROKER_URL=rabbitmq_url,
    )
    response = app.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "not ready"
    assert body["checks"]["database"]["ok"] is False
    assert "OperationalError" in body["checks"]["database"]["error"]
    assert body["checks"]["broker"]["ok"] is True


def test_readyz_is_503_when_the_broker_is_down(make_app, mysql_url):
    app = make_app(
        DATABASE_URL=mysql_url, BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    )
    response = app.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 503
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_readyz_gives_up_on_a_silent_dependency_within_its_time_limit(make_app, mysql_url):
    """A broker that accepts the connection and never speaks must not hang the probe."""
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted = []
    stop = threading.Event()

    def accept_and_say_nothing():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        app = make_app(
            DATABASE_URL=mysql_url,
            BROKER_URL=f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}//",
            BROKER_CHECK_TIMEOUT="1",
        )
        started = time.monotonic()
        response = app.test_client().get("/readyz")
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        silent.close()
    assert response.status_code == 503
    assert response.get_json()["checks"]["broker"]["ok"] is False
    assert elapsed < 5


def test_readyz_shows_the_detail_of_a_failure_only_to_allowed_networks(make_app, rabbitmq_url):
    port = closed_port()
    app = make_app(
        schema=False,
        DATABASE_URL=f"mysql+pymysql://root@127.0.0.1:{port}/nowhere",
        BROKER_URL=rabbitmq_url,
    )
    outside = app.test_client().get("/readyz", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert outside.status_code == 503
    assert outside.get_json() == {
        "status": "not ready",
        "checks": {"database": {"ok": False}, "broker": {"ok": True}},
    }
    inside = app.test_client().get("/readyz").get_json()  # from 127.0.0.1
    assert "Can't connect to MySQL server" in inside["checks"]["database"]["error"]
