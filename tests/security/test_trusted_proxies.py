"""A web instance on a private address believes X-Forwarded-For from its proxies only.

A web-only host listens beyond loopback for the Nginx of another host, so other
machines on that network can reach it too. Such a peer must not pick the client
address the rate limits and the /metrics allow-list see. A real gunicorn takes
its listening address from gunicorn.conf.py (WEB_BIND_ADDRESS, 127.0.0.9 here);
requests come from the trusted proxy (127.0.0.1) and from another peer
(127.0.0.7), both with forwarded headers of their choosing.
"""

from __future__ import annotations

import http.client
import re
import subprocess

import pytest

from ..servers import PROJECT_ROOT, VENV_BIN, base_env, free_port, stop, wait_until_healthy

ADDRESS = "127.0.0.9"
PROXY = "127.0.0.1"
STRANGER = "127.0.0.7"
# Scrapes are let in from this network only (a documentation network: nobody's real address).
SCRAPERS = "198.51.100.0/24"
SIGN_INS = 3


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trusted-proxies")
    port = free_port()
    env = base_env(
        PORT=str(port),
        WEB_BIND_ADDRESS=ADDRESS,
        TRUSTED_PROXIES=PROXY,
        PROXY_FIX_HOPS="1",
        METRICS_ALLOWED_NETWORKS=SCRAPERS,
        RATELIMIT_ENABLED="1",
        AUTH_RATE_LIMIT=f"{SIGN_INS}/minute",
        DATABASE_URL=f"sqlite:///{tmp / 'site.db'}",
        PUBLIC_URL="http://board.example.com",
    )
    migrate = subprocess.run([str(VENV_BIN / "pulseboard"), "db", "upgrade"], env=env,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr
    with open(tmp / "gunicorn.log", "w+") as log:
        # No --bind: gunicorn.conf.py's own, from WEB_BIND_ADDRESS.
        process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn")], env=env, cwd=PROJECT_ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until_healthy(f"http://{ADDRESS}:{port}", process, log, 30)
            yield port
        finally:
            stop(process)


def request(port: int, source: str, method: str, path: str, forwarded_for: str, **options):
    """One request from ``source`` with ``X-Forwarded-For: forwarded_for``.

    Returns (status, body, the session cookie set); ``cookie`` and ``body`` in ``options``."""
    connection = http.client.HTTPConnection(ADDRESS, port, timeout=10, source_address=(source, 0))
    headers = {"Host": "board.example.com", "X-Forwarded-For": forwarded_for,
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    if options.get("cookie"):
        headers["Cookie"] = options["cookie"]
    try:
        connection.request(method, path, body=options.get("body"), headers=headers)
        response = connection.getresponse()
        cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
        return response.status, response.read().decode(), cookie
    finally:
        connection.close()


def test_it_listens_on_its_own_address_only(instance):
    assert request(instance, PROXY, "GET", "/healthz", "198.51.100.5")[0] == 200
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection("127.0.0.1", instance, timeout=5).connect()


def test_only_the_trusted_proxy_names_the_client_for_the_metrics_allow_list(instance):
    # Through the proxy, a scraper on the allowed network is let in, and nobody else.
    assert request(instance, PROXY, "GET", "/metrics", "198.51.100.5")[0] == 200
    assert request(instance, PROXY, "GET", "/metrics", "203.0.113.5")[0] == 403
    # Another peer claiming to forward for that scraper is itself, and refused.
    assert request(instance, STRANGER, "GET", "/metrics", "198.51.100.5")[0] == 403


def sign_in_statuses(port: int, source: str, addresses: list[str]) -> list[int]:
    statuses = []
    for forwarded in addresses:
        _, page, cookie = request(port, source, "GET", "/auth/login", forwarded)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        body = f"csrf_token={token}&email=ada%40example.com&password=wrong"
        status = request(port, source, "POST", "/auth/login", forwarded, body=body, cookie=cookie)[
            0
        ]
        statuses.append(status)
    return statuses


def test_a_peer_that_is_not_a_proxy_cannot_dodge_the_sign_in_limit_by_naming_new_addresses(
    instance,
):
    # Through the proxy each client address has its own allowance ("Wrong email or password").
    through_proxy = sign_in_statuses(instance, PROXY, [f"203.0.113.{n}" for n in range(1, 7)])
    assert through_proxy == [200] * 6, through_proxy
    # A stranger naming a new address on every try is counted as itself.
    stranger = sign_in_statuses(instance, STRANGER, [f"192.0.2.{n}" for n in range(1, 7)])
    assert stranger[SIGN_INS:] == [429] * (6 - SIGN_INS), stranger
