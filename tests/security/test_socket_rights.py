"""A socket acts only while its session and rights hold, on every namespace, in both modes.

``/admin`` and ``/stream`` are bound to the session that opened them: a request
for the connection without that cookie is refused, and signing out, ending one
session from Settings, disabling or demoting the user ends its sockets, also
when the order comes from another process (a CLI on the in-process bus reaches
no server: the periodic rights check does).  Admin rights are checked again on
every broadcast.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
import socketio
from sqlalchemy import create_engine, update

from pulseboard.models import User

from ..conftest import PASSWORD
from ..pipeline import wait_for
from ..servers import base_env, free_port, run_cli
from ..streaming import CSRF, StreamClient, embedded_site, rabbitmq_site, signed_in_session

NOTICE = {"level": "info", "title": "maintenance", "body": "", "target": "all"}


@pytest.fixture(scope="module", params=["embedded", "rabbitmq"])
def site(request, tmp_path_factory):
    """The same site in both modes; the periodic rights check is slowed down so the
    disconnect that each action sends is what the tests see.  Shared by the module's
    tests: each leaves the users as it found them, but for bob's disable, which runs
    last."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    slow_sweep = {"STREAM_RIGHTS_CHECK_SECONDS": "3600"}
    if request.param == "embedded":
        with embedded_site(tmp_path, **slow_sweep) as found:
            env = base_env(DATABASE_URL=found["db"], TMPDIR=str(tmp_path))
            yield {"url": found["url"], "env": env, "mode": "embedded"}
    else:
        rabbitmq_url = request.getfixturevalue("rabbitmq_url")
        mysql_server = request.getfixturevalue("mysql_server")
        ports = [free_port()]
        with rabbitmq_site(tmp_path, rabbitmq_url, mysql_server, ports, **slow_sweep) as found:
            yield {"url": found["urls"][0], "env": found["env"], "mode": "rabbitmq"}


class AdminClient:
    """A Socket.IO client on ``/admin`` alone, over long-polling, with a browser's cookies."""

    def __init__(self, url: str, browser: requests.Session):
        self.disconnected = False
        self.client = socketio.Client(reconnection=False, http_session=browser)
        self.client.on("disconnect", self._on_disconnect, namespace="/admin")
        self.client.connect(url, namespaces=["/admin"], transports=["polling"], wait_timeout=10)

    def _on_disconnect(self, *_):
        self.disconnected = True

    def broadcast(self, **fields) -> dict:
        return self.client.call("broadcast", {**NOTICE, **fields}, namespace="/admin", timeout=10)

    def close(self):
        if self.client.connected:
            self.client.disconnect()


def notices_watcher(url: str, clients) -> StreamClient:
    watcher = StreamClient(url, signed_in_session(url, "bob@example.com"))
    clients.append(watcher)
    watcher.call("subscribe", {"topics": ["notices"]})
    return watcher


def sign_out(url: str, browser: requests.Session) -> None:
    token = CSRF.search(browser.get(f"{url}/settings/", timeout=10).text).group(1)
    browser.post(f"{url}/auth/logout", data={"csrf_token": token}, timeout=10)


def test_a_request_for_an_admin_socket_without_its_session_cookie_is_refused(
    site, clients, tmp_path
):
    url = site["url"]
    watcher = notices_watcher(url, clients)
    admin = AdminClient(url, signed_in_session(url, "ada@example.com"))
    try:
        forged = "42/admin," + json.dumps(["broadcast", {**NOTICE, "title": "forged"}])
        answer = requests.post(
            f"{url}/socket.io/?EIO=4&transport=polling&sid={admin.client.eio.sid}",
            data=forged,
            timeout=5,
        )
        assert answer.status_code == 403
        # The marker: the admin's own broadcast arrives, and nothing before it.
        assert admin.broadcast(title="marker")["ok"]
        wait_for(lambda: watcher.notices, 10, message="the marker notice")
        assert [notice["title"] for notice in watcher.notices] == ["marker"]
    finally:
        admin.close()


def test_signing_out_ends_the_admin_socket(site):
    url = site["url"]
    browser = signed_in_session(url, "ada@example.com")
    admin = AdminClient(url, browser)
    try:
        sign_out(url, browser)
        wait_for(lambda: admin.disconnected, 10, message="the /admin socket disconnected")
    finally:
        admin.close()


def test_a_demoted_admin_cannot_broadcast_even_before_any_disconnect_arrives(site, clients):
    url = site["url"]
    watcher = notices_watcher(url, clients)
    admin = AdminClient(url, signed_in_session(url, "ada@example.com"))
    try:
        # Straight in the database: no disconnect message is sent, as when one is lost.
        demote_without_notice(site["env"]["DATABASE_URL"], "ada@example.com")
        assert admin.broadcast(title="from a former admin") == {"ok": False, "error": "admins only"}
        wait_for(lambda: admin.disconnected, 10, message="the refused socket disconnected")
        promoted = run_cli("users", "promote", "ada@example.com", env=site["env"])
        assert promoted.returncode == 0, promoted.stderr
        marker = AdminClient(url, signed_in_session(url, "ada@example.com"))
        assert marker.broadcast(title="marker")["ok"]
        marker.close()
        wait_for(lambda: watcher.notices, 10, message="the marker notice")
        assert [notice["title"] for notice in watcher.notices] == ["marker"]
    finally:
        admin.close()


def demote_without_notice(database_url: str, email: str) -> None:
    """Take the admin role away in the database alone, as if the disconnect were lost."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(update(User).where(User.email == email).values(is_admin=False))
    engine.dispose()


# The in-process bus of a CLI reaches no server: in embedded mode the rights check
# does that work (the last test).
@pytest.mark.parametrize("site", ["rabbitmq"], indirect=True)
def test_demoting_an_admin_from_the_cli_ends_their_sockets(site):
    url = site["url"]
    admin = AdminClient(url, signed_in_session(url, "ada@example.com"))
    try:
        demoted = run_cli("users", "promote", "--revoke", "ada@example.com", env=site["env"])
        assert demoted.returncode == 0, demoted.stderr
        wait_for(lambda: admin.disconnected, 10, message="the /admin socket disconnected")
    finally:
        admin.close()
        assert run_cli("users", "promote", "ada@example.com", env=site["env"]).returncode == 0


def test_ending_one_session_from_settings_ends_that_devices_socket(site, clients):
    url = site["url"]
    email = f"{site['mode']}-carol@example.com"  # a user with no other sessions
    created = run_cli("users", "create", email, "--password-stdin", env=site["env"], input=PASSWORD)
    assert created.returncode == 0, created.stderr
    phone = signed_in_session(url, email)
    socket_of_phone = StreamClient(url, phone)
    clients.append(socket_of_phone)
    laptop = signed_in_session(url, email)
    page = laptop.get(f"{url}/settings/", timeout=10).text
    ends = re.findall(r'action="(/settings/sessions/\d+/end)"', page)
    assert len(ends) == 1, ends  # the laptop's own session has no "end" button
    token = CSRF.search(page).group(1)
    assert laptop.post(f"{url}{ends[0]}", data={"csrf_token": token}, timeout=10).ok
    assert socket_of_phone.disconnected.wait(10), "the ended session's socket stayed open"


@pytest.mark.parametrize("site", ["rabbitmq"], indirect=True)
def test_disabling_a_user_from_the_cli_ends_their_sockets(site, clients):
    url = site["url"]
    bob = StreamClient(url, signed_in_session(url, "bob@example.com"))
    clients.append(bob)
    disabled = run_cli("users", "disable", "bob@example.com", env=site["env"])
    assert disabled.returncode == 0, disabled.stderr
    assert bob.disconnected.wait(10), "the disabled user's socket stayed open"


def test_the_rights_check_ends_sockets_that_no_message_reached(tmp_path, clients):
    """Embedded mode: a CLI's disable and demote reach no server over the bus."""
    with embedded_site(tmp_path, STREAM_RIGHTS_CHECK_SECONDS="1") as found:
        url = found["url"]
        env = base_env(DATABASE_URL=found["db"], TMPDIR=str(tmp_path))
        bob = StreamClient(url, signed_in_session(url, "bob@example.com"))
        clients.append(bob)
        admin = AdminClient(url, signed_in_session(url, "ada@example.com"))
        try:
            assert run_cli("users", "disable", "bob@example.com", env=env).returncode == 0
            assert (
                run_cli("users", "promote", "--revoke", "ada@example.com", env=env).returncode == 0
            )
            assert bob.disconnected.wait(10), "the disabled user's socket stayed open"
            wait_for(lambda: admin.disconnected, 10, message="the demoted admin's socket ended")
        finally:
            admin.close()
