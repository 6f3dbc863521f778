"""Helpers for live-stream tests: a signed-in browser session and a Socket.IO client."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
from pathlib import Path

import requests
import socketio

from pulseboard.config import load_config
from pulseboard.events.topology import Topology

from .conftest import PASSWORD
from .pipeline import ConsumerProcess, declared_topology, wait_for
from .servers import base_env, free_port, gunicorn, run_cli, temporary_database

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@contextlib.contextmanager
def embedded_site(tmp: Path, **settings: str):
    """A migrated, running site on the in-process bus and SQLite, with two users
    (ada@example.com, an admin, and bob@example.com) and an ingest token for "*"."""
    port = free_port()
    env = base_env(
        DATABASE_URL=f"sqlite:///{tmp / 'site.db'}",
        TMPDIR=str(tmp),
        CONSUMER_BATCH_WAIT_MS="5",
        AUTH_RATE_LIMIT="1000/minute",  # tests sign in many times from one address
        **settings,
    )
    assert run_cli("db", "upgrade", env=env).returncode == 0
    create_users(env)
    token = run_cli("tokens", "create", "--name", "tests", "--topics", "*", env=env)
    with gunicorn(env, port=port) as url:
        yield {
            "url": url,
            "token": token.stdout.strip().splitlines()[-1],
            "db": f"sqlite:///{tmp / 'site.db'}",
            "log": str(tmp / f"gunicorn-{port}.log"),
        }


def create_users(env: dict[str, str]) -> None:
    """The two users of every test site: ada@example.com, an admin, and bob@example.com."""
    for email, name, extra in (
        ("ada@example.com", "Ada", ["--admin"]),
        ("bob@example.com", "Bob", []),
    ):
        created = run_cli(
            "users",
            "create",
            email,
            "--name",
            name,
            *extra,
            "--password-stdin",
            env=env,
            input=PASSWORD + "\n",
        )
        assert created.returncode == 0, created.stderr


@contextlib.contextmanager
def rabbitmq_site(tmp: Path, rabbitmq_url: str, mysql_server: str, ports: list[int], **settings):
    """Web instances on ``ports`` sharing RabbitMQ and a fresh MariaDB database, with
    the consumer and the users of ``create_users``; names of their own on the broker."""
    with contextlib.ExitStack() as stack:
        env = base_env(
            APP_SLUG=f"pbt-{secrets.token_hex(4)}",
            DATABASE_URL=stack.enter_context(temporary_database(mysql_server)),
            BROKER_URL=rabbitmq_url,
            TMPDIR=str(tmp),
            PUBLIC_ORIGINS=",".join(f"http://127.0.0.1:{port}" for port in ports),
            AUTH_RATE_LIMIT="1000/minute",
            CONSUMER_BATCH_WAIT_MS="5",
            **settings,
        )
        assert run_cli("db", "upgrade", env=env).returncode == 0
        create_users(env)
        stack.enter_context(declared_topology(rabbitmq_url, Topology.from_config(load_config(env))))
        urls = [stack.enter_context(gunicorn(env, port=port)) for port in ports]
        consumer = ConsumerProcess(env, tmp / "consumer.log")
        stack.callback(consumer.stop)
        consumer.wait_connected()
        yield {"urls": urls, "env": env, "config": load_config(env)}


def signed_in_session(
    url: str, email: str, password: str = PASSWORD, browser: requests.Session | None = None
) -> requests.Session:
    """``browser`` (a new session if None) signed in as ``email``."""
    browser = browser or requests.Session()
    token = CSRF.search(browser.get(f"{url}/auth/login", timeout=10).text).group(1)
    response = browser.post(
        f"{url}/auth/login",
        data={"email": email, "password": password, "csrf_token": token},
        timeout=10,
    )
    assert response.url.rstrip("/") != f"{url}/auth/login", "sign-in failed"
    return browser


class StreamClient:
    """A python-socketio client on /stream that records what it receives."""

    def __init__(
        self,
        url: str,
        browser: requests.Session | None,
        transport: str = "websocket",
        origin: str | None = None,
        auth: dict | None = None,
    ):
        self.browser = browser
        self.events: list[dict] = []
        self.batches = 0  # "events" messages received
        self.notices: list[dict] = []
        self.disconnected = threading.Event()
        # The browser's own cookie jar: like a real page, every request carries the session.
        self.client = socketio.Client(reconnection=False, http_session=browser)
        self.client.on("events", self._on_events, namespace="/stream")
        self.client.on("notice", self.notices.append, namespace="/stream")
        self.client.on("disconnect", lambda *_: self.disconnected.set(), namespace="/stream")
        # Without an explicit origin the WebSocket transport sends the page's own one.
        headers = {"Origin": origin} if origin else {}
        self.client.connect(
            url,
            namespaces=["/stream"],
            transports=[transport],
            headers=headers,
            auth=auth,
            wait_timeout=10,
        )

    def _on_events(self, batch: list[dict]) -> None:
        self.batches += 1
        self.events.extend(batch)

    def call(self, event: str, data) -> dict:
        return self.client.call(event, data, namespace="/stream", timeout=10)

    def wait_for_events(self, count: int, timeout: float = 10) -> list[dict]:
        wait_for(lambda: len(self.events) >= count, timeout, message=f"{count} events")
        return self.events

    def close(self) -> None:
        if self.client.connected:
            self.client.disconnect()
        websocket = getattr(self.client.eio, "ws", None)
        if websocket is not None:  # the server may have dropped us: close our end too
            websocket.shutdown()
        if self.browser is not None:
            self.browser.close()


def send_admin_notice(browser: requests.Session, url: str, **fields: str) -> None:
    """An admin's notice from the admin page (the only way in for notices besides the
    /admin namespace and the CLI: the ingest API refuses the type)."""
    page = browser.get(f"{url}/admin/", timeout=10).text
    token = CSRF.search(page).group(1)
    sent = browser.post(f"{url}/admin/notices", data={"csrf_token": token, **fields}, timeout=10)
    assert "Notice sent." in sent.text, fields


def ingest(url: str, token: str, events: list[dict]) -> list[str]:
    response = requests.post(
        f"{url}/api/v1/events",
        data=json.dumps(events),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return response.json()["accepted"]
