"""What the production Nginx site refuses before the app sees it, and what it keeps out of its log.

Through the real site on loopback: Nginx rendered from the product's templates,
over TLS, in front of two gunicorn gevent instances (tests/deploy_site.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import ssl
import time

import pytest
import requests
from playwright.sync_api import expect

from ..browser import PageProblems
from ..conftest import PASSWORD
from ..deploy_site import production_site


@pytest.fixture(scope="module")
def site(tmp_path_factory, rabbitmq_url, mysql_server):
    with production_site(tmp_path_factory.mktemp("nginx-site"), rabbitmq_url, mysql_server) as up:
        yield up


def tls_context() -> ssl.SSLContext:
    """Trusts anything: the tests look at what Nginx does, not at the certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def raw_exchange(site, scheme: str, host: str) -> bytes:
    """One HTTP/1.1 GET /healthz naming ``host``, over a connection whose SNI (for
    https) is the site's own; everything that comes back until Nginx closes."""
    port = site["https_port"] if scheme == "https" else site["http_port"]
    with contextlib.ExitStack() as stack:
        connection = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        if scheme == "https":
            connection = stack.enter_context(
                tls_context().wrap_socket(connection, server_hostname="localhost")
            )
        connection.sendall(
            f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_request_for_another_host_is_closed_unanswered(site, scheme):
    # The site's own name is answered on the same port, so the silence below is Nginx's choice.
    assert raw_exchange(site, scheme, "localhost").startswith(b"HTTP/1.1 ")
    assert raw_exchange(site, scheme, "evil.example") == b""


def tls_handshake(site, server_name: str | None) -> str:
    """A TLS handshake with the site naming ``server_name`` in SNI; the protocol agreed."""
    with (
        socket.create_connection(("127.0.0.1", site["https_port"]), timeout=10) as connection,
        tls_context().wrap_socket(connection, server_hostname=server_name) as tls,
    ):
        return tls.version()


@pytest.mark.parametrize("server_name", ["evil.example", None], ids=["other-host", "no-sni"])
def test_a_tls_handshake_for_another_host_is_refused(site, server_name):
    assert tls_handshake(site, "localhost").startswith("TLSv1")
    with pytest.raises(ssl.SSLError, match=r"UNRECOGNIZED_NAME|unrecognized name"):
        tls_handshake(site, server_name)


def polling_session(site) -> tuple[requests.Session, str]:
    """An anonymous Engine.IO long-polling session, as any visitor can open; its URL."""
    session = requests.Session()
    handshake = session.get(f"{site['url']}/socket.io/?EIO=4&transport=polling", timeout=10)
    assert handshake.status_code == 200, handshake.text
    sid = json.loads(handshake.text[1:])["sid"]
    return session, f"{site['url']}/socket.io/?EIO=4&transport=polling&sid={sid}"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversized_long_polling_post_is_refused_by_nginx(site, framing):
    session, polling = polling_session(site)
    body = b"4" + b"x" * 100_000
    # A generator makes requests send the body chunked, with no length announced.
    data = (
        body
        if framing == "content-length"
        else (body[i : i + 8192] for i in range(0, len(body), 8192))
    )
    response = session.post(
        polling, data=data, headers={"Content-Type": "text/plain;charset=UTF-8"}, timeout=10
    )
    assert response.status_code == 413
    assert "<center>nginx</center>" in response.text  # Nginx's own page: the app never saw it
    assert requests.get(f"{site['url']}/healthz", timeout=10).status_code == 200


def access_log_through(site, sentinel: str) -> str:
    """The access log once the request for ``sentinel`` is in it. Nginx (one worker)
    logs each request as it ends, so every earlier request is in by then."""
    requests.get(f"{site['url']}/healthz?{sentinel}", timeout=10)
    log = site["nginx_dir"] / "access.log"
    deadline = time.monotonic() + 10
    while sentinel not in (text := log.read_text()):
        assert time.monotonic() < deadline, f"{sentinel} never reached the access log"
        time.sleep(0.05)
    return text


def test_the_access_log_keeps_no_link_token_oauth_code_or_polling_sid(site):
    secret = secrets.token_hex(8)
    url, http_url = site["url"], site["http_url"]
    requests.get(f"{url}/auth/verify/{secret}v1", timeout=10)
    requests.get(f"{url}/auth/reset/{secret}r1?from=mail", timeout=10)
    requests.get(f"{url}/settings/email/confirm/{secret}e1", timeout=10)
    requests.get(f"{url}/auth/oauth/github/callback?code={secret}c1&state={secret}s1", timeout=10)
    requests.get(f"{http_url}/auth/reset/{secret}h1", allow_redirects=False, timeout=10)
    requests.get(f"{url}/healthz", headers={"Referer": f"{url}/auth/reset/{secret}f1"}, timeout=10)
    session, polling = polling_session(site)
    session.post(polling, data=b"1", timeout=10)  # Engine.IO "close": ends the session
    polling_sid = polling.rsplit("sid=", 1)[1]

    log = access_log_through(site, f"sentinel-{secret}")

    assert secret not in log.replace(f"sentinel-{secret}", "")
    assert polling_sid not in log
    for line in (
        '"GET /auth/verify/[redacted] HTTP/1.1" ',
        '"GET /auth/reset/[redacted]?from=mail HTTP/1.1" ',
        '"GET /settings/email/confirm/[redacted] HTTP/1.1" ',
        '"GET /auth/oauth/github/callback?[redacted] HTTP/1.1" ',
        '"GET /auth/reset/[redacted] HTTP/1.1" 301 ',
        f' "{url}/auth/reset/[redacted]" "python-requests/',
        '"POST /socket.io/?EIO=4&transport=polling&sid=[redacted] HTTP/1.1" ',
    ):
        assert line in log, f"{line!r} not in:\n{log}"


def connect_sources(policy: str) -> list[str]:
    directive = re.search(r"(?:^|;)\s*connect-src ([^;]*)", policy)
    assert directive, policy
    return directive.group(1).split()


def test_pages_may_open_websockets_to_their_own_origin_only(site):
    through_nginx = requests.get(f"{site['url']}/auth/login", timeout=10)
    from_the_app = requests.get(f"http://127.0.0.1:{site['web_ports'][0]}/auth/login", timeout=10)
    own = f"wss://localhost:{site['https_port']}"
    for response in (through_nginx, from_the_app):
        policy = response.headers["Content-Security-Policy"]
        assert connect_sources(policy) == ["'self'", own], policy


@pytest.mark.browser
def test_the_live_page_still_streams_over_websocket_through_the_site(site, browser):
    """Under the narrowed policy Nginx sends, the page opens its WebSocket, with no violation."""
    context = browser.new_context(ignore_https_errors=True)  # the test certificate
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems = PageProblems(page)
    page.goto(f"{site['url']}/auth/login")
    page.fill("input[name=email]", "bob@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action^='/auth/login'] button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{site['url']}/live")
    expect(page.locator("#transport")).to_have_text("Transport: websocket")
    context.close()
    assert problems.messages == []
