"""Cross-site forgery, open redirects, rate limits: what an attacker tries first."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from .conftest import CSRF_INPUT, PASSWORD, AuthActions

PAGES = [
    "/",
    "/docs",
    "/auth/login",
    "/auth/register",
    "/auth/forgot",
    "/auth/verify",
    "/dashboard",
    "/settings/",
    "/admin/",
    "/profile",
    "/auth/confirm",
]


class PostActions(HTMLParser):
    def __init__(self):
        super().__init__()
        self.actions: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "").lower() == "post":
            self.actions.add(attrs.get("action"))


def post_actions(client) -> set[str]:
    parser = PostActions()
    for page in PAGES:
        parser.feed(client.get(page).get_data(as_text=True))
    return parser.actions


def test_every_post_form_is_refused_without_its_csrf_token(app, make_user):
    make_user(admin=True)
    make_user(email="bob@example.com", name="Bob")
    client = app.test_client()
    anonymous = post_actions(client)
    AuthActions(client).login()
    actions = (anonymous | post_actions(client)) - {"/theme"}  # exempt by design
    assert {"/auth/login", "/auth/logout", "/settings/profile", "/settings/password"} <= actions
    for action in sorted(actions):
        response = client.post(action, data={"email": "x@example.com", "password": PASSWORD})
        assert response.status_code == 400, f"{action} accepted a post without a CSRF token"
    assert client.get("/dashboard").status_code == 200  # nothing above signed us out


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "///evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "https://evil.com",
        "http:evil.com",
        "javascript:alert(1)",
        "%2F%2Fevil.com",
        "/%2F/evil.com",
        "/\t/evil.com",
        " //evil.com",
        "https:/evil.com",
        "//evil.com@localhost",
    ],
)
def test_sign_in_never_redirects_off_site(app, client, make_user, target):
    make_user()
    page = client.get("/auth/login", query_string={"next": target}).get_data(as_text=True)
    token = CSRF_INPUT.search(page).group(1)
    response = client.post(
        "/auth/login",
        data={
            "email": "ada@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "next": target,
        },
    )
    assert response.status_code == 302
    location = response.location
    assert location.startswith("/") and not location.startswith(("//", "/\\"))
    assert "evil" not in location.split("?")[0] or location.startswith("/%2F")


def test_a_local_next_is_honoured(app, client, make_user):
    make_user()
    token = CSRF_INPUT.search(client.get("/auth/login").get_data(as_text=True)).group(1)
    response = client.post(
        "/auth/login",
        data={
            "email": "ada@example.com",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/settings/?tab=security",
        },
    )
    assert response.location == "/settings/?tab=security"


@pytest.mark.parametrize("path", ["/auth/login", "/auth/forgot", "/auth/register"])
def test_account_forms_are_rate_limited_with_a_429_page(make_app, path):
    app = make_app(RATELIMIT_ENABLED="1", AUTH_RATE_LIMIT="3/minute")
    client = app.test_client()
    statuses = []
    for _ in range(4):
        token = CSRF_INPUT.search(client.get(path).get_data(as_text=True)).group(1)
        statuses.append(
            client.post(
                path, data={"email": "a@example.com", "password": "x", "csrf_token": token}
            ).status_code
        )
    assert statuses[:3] != [429] * 3 and statuses[3] == 429
    # Only posts that pass the CSRF check reach the limiter, so an attacker needs
    # a fresh token per attempt and is counted all the same.
    token = CSRF_INPUT.search(client.get(path).get_data(as_text=True)).group(1)
    limited = client.post(path, data={"csrf_token": token})
    assert limited.status_code == 429
    assert "Too many requests" in limited.get_data(as_text=True)
    assert client.get(path).status_code == 200  # reading the page is not limited
