"""New passwords that are easy to guess are refused, with the reason, wherever one is set."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from pulseboard.auth.links import RESET, make_link_token
from pulseboard.extensions import db
from pulseboard.models import User

from ..conftest import CSRF_INPUT, PASSWORD, AuthActions, sign_up_form

EMAIL = "grace.hopper@example.com"
WEAK = {
    "common": "password123",
    "digits": "1234567890",
    "repeat": "aaaaaaaaaa",
    "own email": EMAIL,
}


def form_post(client, page: str, action: str, **data):
    token = CSRF_INPUT.search(client.get(page).get_data(as_text=True)).group(1)
    return client.post(action, data={"csrf_token": token, **data})


def register(client, password: str):
    fields = sign_up_form(EMAIL, "Grace Hopper", password)
    return form_post(client, "/auth/register", "/auth/register", **fields)


def accounts(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(User.email)))


@pytest.mark.parametrize("password", list(WEAK.values()), ids=list(WEAK))
def test_sign_up_refuses_a_guessable_password_and_says_why(app, client, password):
    response = register(client, password)
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert "Choose a password that is harder to guess." in page
    assert accounts(app) == []


def test_sign_up_names_the_email_when_the_password_is_built_from_it(client):
    page = html.unescape(register(client, EMAIL).get_data(as_text=True))
    assert "It is built from your email address or name." in page


def test_sign_up_accepts_a_strong_password(app, client):
    response = register(client, "vivid otter sunset 42")
    assert "Check your email" in response.get_data(as_text=True)
    assert accounts(app) == [EMAIL]


def test_a_password_change_in_settings_refuses_the_accounts_own_address(app, client, make_user):
    make_user(email=EMAIL, name="Grace Hopper")
    AuthActions(client).login(EMAIL)
    response = form_post(client, "/settings/", "/settings/password", password=EMAIL, confirm=EMAIL)
    assert response.status_code == 400
    assert "It is built from your email address or name." in html.unescape(
        response.get_data(as_text=True)
    )
    assert AuthActions(app.test_client()).login(EMAIL, PASSWORD).status_code == 302


def test_a_password_reset_refuses_a_common_password(app, client, make_user):
    user_id = make_user(email=EMAIL, name="Grace Hopper")
    with app.test_request_context():
        link = f"/auth/reset/{make_link_token(db.session.get(User, user_id), RESET)}"
    response = form_post(client, link, link, password="password123", confirm="password123")
    assert response.status_code == 200
    assert "This is a very common password." in html.unescape(response.get_data(as_text=True))
    assert AuthActions(app.test_client()).login(EMAIL, PASSWORD).status_code == 302
