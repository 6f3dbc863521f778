"""The rendered Nginx site in front of two gunicorn gevent instances, over TLS on loopback.

Everything production runs, but on high loopback ports: Nginx from the same
templates, two web instances in production mode on RabbitMQ and MariaDB, the
consumer; then what a browser and deploy/verify.sh see through it.
"""

from __future__ import annotations

import subprocess

import pytest
import requests
import socketio

from pulseboard.events.producer import Producer

from .conftest import PASSWORD
from .deploy_site import VERIFY, production_site, render_site, run_verify, running_nginx
from .servers import free_port
from .streaming import CSRF, StreamClient

HEADERS = (
    "Strict-Transport-Security",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Content-Security-Policy",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory, rabbitmq_url, mysql_server):
    with production_site(tmp_path_factory.mktemp("deploy-site"), rabbitmq_url, mysql_server) as up:
        yield up


def signed_in_over_https(site) -> requests.Session:
    """Sign in as a browser does over HTTPS: with a Referer, which CSRF checks there."""
    browser = requests.Session()
    browser.verify = str(site["cacert"])
    browser.headers["Referer"] = f"{site['url']}/auth/login"
    page = browser.get(f"{site['url']}/auth/login", timeout=10).text
    response = browser.post(
        f"{site['url']}/auth/login",
        data={"email": "bob@example.com", "password": PASSWORD, "csrf_token": CSRF.search(page)[1]},
        timeout=10,
    )
    # Signed in, and redirected within the public origin (Nginx passed the host and scheme).
    assert response.url in (f"{site['url']}/welcome", f"{site['url']}/dashboard"), response.url
    return browser


def test_plain_http_is_redirected_to_https(site):
    response = requests.get(f"{site['http_url']}/dashboard?x=1", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == f"{site['url']}/dashboard?x=1"


def test_the_acme_challenge_is_answered_over_plain_http(site):
    challenge = site["tmp"] / "nginx" / "acme" / ".well-known" / "acme-challenge" / "token123"
    challenge.write_text("token123.thumbprint")
    response = requests.get(
        f"{site['http_url']}/.well-known/acme-challenge/token123", allow_redirects=False, timeout=10
    )
    assert (response.status_code, response.text) == (200, "token123.thumbprint")


@pytest.mark.parametrize(
    "path",
    [
        "/auth/login",
        "/static/css/app.css",
        "/socket.io/?EIO=4&transport=polling",
        "/healthz",
        "/nope",
    ],
)
def test_every_response_carries_each_security_header_once(site, path):
    response = requests.get(f"{site['url']}{path}", timeout=10)
    for name in HEADERS:
        values = [v for k, v in response.raw.headers.items() if k.lower() == name.lower()]
        assert len(values) == 1, f"{path}: {name} {values}"
    assert (
        "'unsafe-inline'"
        not in response.headers["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    )


def test_static_files_are_served_by_nginx_with_caching(site):
    response = requests.get(f"{site['url']}/static/css/app.css", timeout=10)
    assert response.status_code == 200
    assert "max-age=604800" in response.headers["Cache-Control"]
    assert response.headers["Content-Type"].startswith("text/css")


def test_metrics_are_not_reachable_through_nginx(site):
    assert requests.get(f"{site['url']}/metrics", timeout=10).status_code == 403


def test_the_app_sees_the_client_scheme_and_sets_secure_cookies(site):
    response = requests.get(f"{site['url']}/auth/login", timeout=10)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax"):
        assert flag in cookie


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_signed_in_client_receives_events_through_nginx(site, clients, transport):
    browser = signed_in_over_https(site)
    try:
        client = StreamClient(site["url"], browser, transport)
    except socketio.exceptions.ConnectionError as error:
        # Known, not yet explained: once in several runs an instance's first WebSocket
        # through Nginx connects /stream and its transport closes a millisecond later
        # ("transport close" in the log), so the connect goes unanswered. A page
        # reconnects by itself; this client tries once more, as it would, and prints so.
        print(f"first /stream connect through Nginx lost ({error}); retried")
        client = StreamClient(site["url"], browser, transport)
    clients.append(client)
    assert client.client.transport() == transport
    assert client.call("subscribe", {"topics": ["market.ticks"]})["ok"]
    producer = Producer.from_config(site["config"])
    ids = [producer.publish("market.ticks", "tick", {"n": n}, key="ACME") for n in range(5)]
    producer.close()
    assert [event["id"] for event in client.wait_for_events(5)][-5:] == ids


def test_verify_script_passes_against_the_live_site(site):
    result = run_verify(site["url"], site["http_url"], site["cacert"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    for check in (
        "healthz",
        "readyz",
        "http_redirects_to_https",
        "unknown_host_closed",
        "session_cookie",
        "socketio_polling_handshake",
        "websocket_upgrade",
        "stream_refuses_anonymous",
    ):
        assert f"PASS {check}\n" in result.stdout


def test_verify_script_names_the_header_a_site_forgot(site, tmp_path):
    # The snippet still hides the app's own copy, so the header is gone altogether.
    http_port, https_port = free_port(), free_port()
    conf = render_site(tmp_path, site["web_ports"], http_port, https_port)
    snippet = tmp_path / "assets" / "nginx" / "pulseboard-security-headers.conf"
    snippet.write_text(
        "".join(
            line
            for line in snippet.read_text().splitlines(True)
            if not line.startswith("add_header X-Frame-Options")
        )
    )
    with running_nginx(conf, https_port):
        result = run_verify(
            f"https://localhost:{https_port}",
            f"http://localhost:{http_port}",
            tmp_path / "cert.pem",
        )
    assert result.returncode == 1
    assert "FAIL header X-Frame-Options: " in result.stdout
    assert "PASS header Referrer-Policy" in result.stdout


def test_verify_script_fails_when_nothing_answers():
    result = subprocess.run(
        ["bash", str(VERIFY), "--insecure", f"https://localhost:{free_port()}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "FAIL healthz: " in result.stdout
