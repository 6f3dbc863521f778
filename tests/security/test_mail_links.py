"""Links in mail and OAuth redirect URIs point at PUBLIC_URL, whatever Host a visitor sends.

A forged Host (or X-Forwarded-Host behind the proxy) must never decide where a
password-reset or verification token is sent, and a Host the site does not
answer to gets a plain 400.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from pulseboard.config import ConfigError, load_config

from ..conftest import CSRF_INPUT, PASSWORD, sign_up_form
from ..mailbox import LINK

PUBLIC_URL = "https://pulse.example.com"
FORGED = {
    "Host header": {"Host": "evil.example"},
    "X-Forwarded-Host header": {"X-Forwarded-Host": "evil.example"},
}


@pytest.fixture
def app(make_app, smtp):
    # A wildcard an operator might list: the forged name gets through the host
    # check, so only the way links are built stands between the token and evil.example.
    return make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp.port),
        MAIL_USE_TLS="0",
        PUBLIC_URL=PUBLIC_URL,
        TRUSTED_HOSTS="pulse.example.com,.example",
        PROXY_FIX_HOPS="1",
        GITHUB_CLIENT_ID="github-client",
        GITHUB_CLIENT_SECRET="github-secret",
    )


class Visitor:
    """The test client with the forged header on every request, as an attacker sends it."""

    def __init__(self, client, headers: dict[str, str]):
        self.client, self.headers = client, headers

    def get(self, path: str):
        return self.client.get(path, headers=self.headers)

    def post_form(self, page: str, action: str, **data):
        token = CSRF_INPUT.search(self.get(page).get_data(as_text=True)).group(1)
        return self.client.post(action, data={"csrf_token": token, **data}, headers=self.headers)


@pytest.fixture(params=list(FORGED), ids=list(FORGED))
def visitor(request, client):
    return Visitor(client, FORGED[request.param])


def register(visitor: Visitor, email: str, name: str):
    return visitor.post_form("/auth/register", "/auth/register", **sign_up_form(email, name))


def test_every_link_in_every_account_mail_is_on_public_url_whatever_the_host(
    app, smtp, visitor, make_user
):
    make_user(email="ada@example.com")
    make_user(email="bob@example.com", name="Bob")
    make_user(email="uma@example.com", name="Uma", email_verified_at=None)

    forgot = visitor.post_form("/auth/forgot", "/auth/forgot", email="ada@example.com")
    resend = visitor.post_form("/auth/verify", "/auth/verify", email="uma@example.com")
    new = register(visitor, "grace@example.com", "Grace")
    taken = register(visitor, "bob@example.com", "Impostor")
    assert [r.status_code for r in (forgot, resend, new, taken)] == [200] * 4
    signed_in = visitor.post_form(
        "/auth/login", "/auth/login", email="ada@example.com", password=PASSWORD
    )
    assert signed_in.status_code == 302
    changes = [
        visitor.post_form("/settings/", "/settings/email", email=address)
        for address in ("ada@new.example", "uma@example.com")
    ]
    assert [r.status_code for r in changes] == [302, 302]

    expected = [
        ("ada@example.com", "Reset your password"),
        ("uma@example.com", "Confirm your email"),
        ("grace@example.com", "Confirm your email"),
        ("bob@example.com", "Someone tried to sign up"),
        ("ada@new.example", "Confirm your new email"),
        ("uma@example.com", "Someone tried to use your address"),
    ]
    mails = [smtp.mailbox.wait_for(to, subject) for to, subject in expected]
    for mail in mails:
        links = LINK.findall(mail.get_payload(decode=True).decode())
        assert links, f"no link in {mail['Subject']!r}"
        assert all(link.startswith(f"{PUBLIC_URL}/") for link in links), (mail["Subject"], links)


def test_the_oauth_redirect_uri_is_on_public_url_whatever_the_host(visitor):
    response = visitor.get("/auth/oauth/github/start")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.location).query)
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/auth/oauth/github/callback"]


@pytest.mark.parametrize("forged", list(FORGED.values()), ids=list(FORGED))
@pytest.mark.parametrize(
    "trusted", [{}, {"TRUSTED_HOSTS": "pulse.example.com"}], ids=["default", "set"]
)
def test_a_host_the_site_does_not_answer_to_gets_a_plain_400(make_app, forged, trusted):
    app = make_app(PUBLIC_URL=PUBLIC_URL, PROXY_FIX_HOPS="1", **trusted)
    client = app.test_client()

    refused = client.get("/auth/forgot", headers=forged)
    assert refused.status_code == 400
    assert refused.mimetype == "text/plain"
    assert "host" in refused.get_data(as_text=True)

    assert client.get("/auth/forgot", headers={"Host": "pulse.example.com"}).status_code == 200
    assert client.get("/auth/forgot").status_code == 200  # localhost: development, probes


def test_public_url_defaults_to_the_first_public_origin_and_must_be_an_origin():
    production = {
        "APP_ENV": "production",
        "SECRET_KEY": "x" * 48,
        "DATABASE_URL": "sqlite:////tmp/unused.db",
        "BROKER_URL": "memory://",
        "APP_DOMAIN": "pulse.example.com",
    }
    config = load_config(production)
    assert config["PUBLIC_URL"] == PUBLIC_URL
    assert "pulse.example.com" in config["TRUSTED_HOSTS"]
    assert "evil.example" not in config["TRUSTED_HOSTS"]
    with pytest.raises(ConfigError, match=r"^PUBLIC_URL"):
        load_config({**production, "PUBLIC_URL": "https://pulse.example.com/app"})
