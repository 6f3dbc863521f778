"""Shared fixtures: an app per test on its own SQLite file, and the real services.

The MySQL-compatible server and RabbitMQ are required: a test that needs one
fails when it is down, so a green run always means the real parts were used.
Set PULSEBOARD_ALLOW_SKIP=1 to skip those tests instead on a machine without them.
"""

from __future__ import annotations

import os
import re
import socket
from urllib.parse import urlsplit

import pytest

from pulseboard import create_app
from pulseboard.auth.passwords import hash_password
from pulseboard.database import utcnow
from pulseboard.extensions import db
from pulseboard.models import User

from .mailbox import Mailbox, SmtpServer
from .servers import temporary_database

MYSQL_SERVER = os.environ.get("TEST_MYSQL_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"')


def sign_up_form(email: str, name: str, password: str = PASSWORD) -> dict[str, str]:
    """The fields of the sign-up form, terms accepted (the CSRF token is the caller's)."""
    return {
        "display_name": name,
        "email": email,
        "password": password,
        "confirm": password,
        "accept": "y",
    }


def service_missing(name: str, address: str) -> None:
    message = f"{name} is not reachable at {address}"
    if os.environ.get("PULSEBOARD_ALLOW_SKIP") == "1":
        pytest.skip(message)
    pytest.fail(f"{message} (required; set PULSEBOARD_ALLOW_SKIP=1 to skip instead)")


def port_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mysql_server() -> str:
    if not port_open(MYSQL_SERVER, 3306):
        service_missing("MySQL/MariaDB", MYSQL_SERVER)
    return MYSQL_SERVER


@pytest.fixture
def mysql_url(mysql_server):
    """A fresh, empty utf8mb4 database on the real server, dropped afterwards."""
    with temporary_database(mysql_server) as url:
        yield url


@pytest.fixture
def clients():
    """Stream clients a test opens; closed after it."""
    opened = []
    yield opened
    for client in opened:
        client.close()


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    if not port_open(RABBITMQ_URL, 5672):
        service_missing("RabbitMQ", RABBITMQ_URL)
    return RABBITMQ_URL


@pytest.fixture
def make_app(tmp_path):
    """Build an app in test mode on its own SQLite file; keyword args are env variables.

    ``schema=False`` skips creating the tables (for a database that is meant to be down).
    """
    apps = []

    def build(schema=True, **env):
        settings = {
            "APP_ENV": "test",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
            "BROKER_URL": "memory://",
            "RATELIMIT_ENABLED": "0",
            **env,
        }
        app = create_app(settings)
        if schema:
            with app.app_context():
                db.create_all()
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        # On RabbitMQ, a disconnect the app sent (revoking a token, say) left its
        # Socket.IO publisher connection open.
        publisher = getattr(app.extensions["socketio"].server.manager, "publisher_connection", None)
        if publisher is not None:
            publisher.release()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def smtp():
    """A real SMTP server on loopback (aiosmtpd) that keeps every message."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def mailbox(smtp) -> Mailbox:
    return smtp.mailbox


@pytest.fixture
def make_user(app):
    def create(email="ada@example.com", name="Ada", admin=False, **fields):
        fields.setdefault("email_verified_at", utcnow())
        with app.app_context():
            user = User(
                email=email,
                display_name=name,
                password_hash=hash_password(PASSWORD),
                is_admin=admin,
                **fields,
            )
            db.session.add(user)
            db.session.commit()
            return user.id

    return create


class AuthActions:
    """Sign in and out through the real forms, CSRF token included."""

    def __init__(self, client):
        self.client = client

    def csrf_token(self, path="/auth/login") -> str:
        page = self.client.get(path).get_data(as_text=True)
        return CSRF_INPUT.search(page).group(1)

    def login(self, email="ada@example.com", password=PASSWORD, follow=False):
        return self.client.post(
            "/auth/login",
            data={"email": email, "password": password, "csrf_token": self.csrf_token()},
            follow_redirects=follow,
        )


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    from .browser import launch

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()
