"""Log lines: JSON with request and user ids in production style, and no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import requests

from pulseboard.gunicorn_logging import redact

from .conftest import PASSWORD
from .mailbox import SmtpServer
from .streaming import StreamClient, embedded_site, ingest, signed_in_session

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
# A line in the text format (logs.TEXT_FORMAT), which LOG_JSON=1 must never write.
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")


def form_post(browser, url, page, action, **data):
    token = CSRF.search(browser.get(f"{url}{page}", timeout=10).text).group(1)
    return browser.post(f"{url}{action}", data={"csrf_token": token, **data}, timeout=10)


def test_logs_are_json_lines_with_ids_and_hold_no_secret(tmp_path):
    with (
        SmtpServer() as smtp,
        embedded_site(
            tmp_path,
            LOG_JSON="1",
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=str(smtp.port),
            MAIL_USE_TLS="0",
        ) as site,
    ):
        url = site["url"]
        visitor = requests.Session()
        form_post(
            visitor,
            url,
            "/auth/login",
            "/auth/login",
            email="bob@example.com",
            password="not the password",
        )
        form_post(
            visitor,
            url,
            "/auth/register",
            "/auth/register",
            display_name="Eve",
            email="eve@example.com",
            password=PASSWORD,
            confirm=PASSWORD,
            accept="y",
        )
        link = smtp.mailbox.link_in(smtp.mailbox.wait_for("eve@example.com", "Confirm"))
        link_token = urlsplit(link).path.rsplit("/", 1)[1]
        visitor.get(f"{url}{urlsplit(link).path}", timeout=10)
        bob = requests.Session()
        signed_in = form_post(
            bob, url, "/auth/login", "/auth/login", email="bob@example.com", password=PASSWORD
        )
        sign_in_request_id = signed_in.history[0].headers["X-Request-ID"]
        cookie = bob.cookies.get("pulseboard_session")
        client = StreamClient(url, bob)
        client.call("subscribe", {"topics": ["market.ticks"]})
        ingest(url, site["token"], [{"topic": "market.ticks", "type": "t", "payload": {}}])
        wrong_token = "pbk_" + "w" * 40
        refused = requests.post(
            f"{url}/api/v1/events",
            json=[{"topic": "market.ticks", "type": "t", "payload": {}}],
            headers={"Authorization": f"Bearer {wrong_token}"},
            timeout=10,
        )
        assert refused.status_code == 401
        client.wait_for_events(1)
        client.close()
        visitor.close()
        log = Path(site["log"]).read_text()

    app_lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert app_lines, "no JSON log lines at all"
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in app_lines)
    # The app's lines are all JSON; the rest is gunicorn's own log and access log.
    assert not [line for line in log.splitlines() if TEXT_LINE.match(line)]
    assert any(line.get("request_id") == sign_in_request_id for line in app_lines)
    sign_ins = [line for line in app_lines if line["msg"].startswith("password sign-in")]
    assert any(line["msg"] == "password sign-in refused" for line in sign_ins)
    accepted = [line for line in sign_ins if line["msg"].startswith("password sign-in: user")]
    assert accepted and all(re.fullmatch(r"[0-9a-f]{32}", line["request_id"]) for line in accepted)
    assert all(line["user_id"] for line in accepted)
    assert any("sid" in line for line in app_lines if "socket" in line["msg"])
    assert "Bearer" not in log and "Authorization" not in log
    for secret in (PASSWORD, "not the password", site["token"], wrong_token, cookie, link_token):
        assert secret not in log, f"a secret reached the log: {secret[:6]}…"


def test_the_request_id_from_the_proxy_is_kept_and_echoed(client):
    response = client.get("/", headers={"X-Request-ID": "edge-1234abcd"})
    assert response.headers["X-Request-ID"] == "edge-1234abcd"
    forged = client.get("/", headers={"X-Request-ID": "bad id; with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["X-Request-ID"])


def test_access_log_lines_lose_the_tokens_in_urls():
    assert redact("GET /auth/verify/abc.DEF-ghi HTTP/1.1") == "GET /auth/verify/[redacted] HTTP/1.1"
    assert redact("GET /auth/reset/tok HTTP/1.1") == "GET /auth/reset/[redacted] HTTP/1.1"
    assert redact("/settings/email/confirm/xyz") == "/settings/email/confirm/[redacted]"
    assert redact("GET /auth/oauth/github/callback?code=c&state=s HTTP/1.1") == (
        "GET /auth/oauth/github/callback?[redacted] HTTP/1.1"
    )
    assert redact("GET /dashboard HTTP/1.1") == "GET /dashboard HTTP/1.1"
    # A long-polling session's sid, wherever it stands in the query; the rest is kept.
    assert redact("POST /socket.io/?EIO=4&transport=polling&sid=iiJWQE8m HTTP/1.1") == (
        "POST /socket.io/?EIO=4&transport=polling&sid=[redacted] HTTP/1.1"
    )
    assert redact("/socket.io/?sid=abc&EIO=4&t=x") == "/socket.io/?sid=[redacted]&EIO=4&t=x"
    assert redact("GET /api/v1/events?sid=kept HTTP/1.1") == "GET /api/v1/events?sid=kept HTTP/1.1"


def test_successful_polls_of_an_open_socket_stay_out_of_the_access_log(tmp_path):
    """Long-polling makes a request per batch: the access log keeps the handshake and
    failures, not the stream of successful polls (unless LOG_SOCKET_POLLS=1)."""
    for log_polls in ("0", "1"):
        with embedded_site(tmp_path / log_polls, LOG_SOCKET_POLLS=log_polls) as site:
            url = site["url"]
            browser = signed_in_session(url, "bob@example.com")
            client = StreamClient(url, browser, transport="polling")
            client.call("subscribe", {"topics": ["market.ticks"]})
            ingest(url, site["token"], [{"topic": "market.ticks", "type": "t", "payload": {}}])
            client.wait_for_events(1)
            client.close()
            stale = requests.get(f"{url}/socket.io/?EIO=4&transport=polling&sid=gone", timeout=10)
            assert stale.status_code == 400
        # Read once the server has stopped: a request's access line is written after
        # its response has gone, so a read right after the answer can miss it.
        lines = Path(site["log"]).read_text().splitlines()
        polls = [line for line in lines if "/socket.io/?" in line and "sid=[redacted]" in line]
        handshakes = [line for line in lines if "/socket.io/?" in line and "sid=" not in line]
        assert handshakes, "the handshake is logged"
        assert [line for line in polls if '" 400 ' in line], "a failed poll is logged"
        ok = [line for line in polls if '" 200 ' in line]
        if log_polls == "1":
            assert len(ok) >= 3, ok  # connect, subscribe, its answer, the event
        else:
            assert ok == []
