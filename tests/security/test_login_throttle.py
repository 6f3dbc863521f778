"""Failed sign-ins are counted per account, whichever addresses they come from.

Guessing one account's password from many client addresses (X-Forwarded-For
through the proxy) slips past the per-address limit; the per-account limit
refuses it once the account has had its share, for a short window only.
"""

from __future__ import annotations

import time

import pytest

from ..conftest import CSRF_INPUT, PASSWORD

LIMIT = 3
WINDOW_SECONDS = 2


@pytest.fixture
def app(make_app):
    return make_app(
        RATELIMIT_ENABLED="1",
        PROXY_FIX_HOPS="1",
        AUTH_ACCOUNT_RATE_LIMIT=f"{LIMIT} per {WINDOW_SECONDS} seconds",
    )


@pytest.fixture
def accounts(make_user):
    make_user(email="ada@example.com")
    make_user(email="bob@example.com", name="Bob")


def sign_in(client, address: str, email: str, password: str):
    """One sign-in from client address ``address``, as the proxy reports it."""
    headers = {"X-Forwarded-For": address}
    page = client.get("/auth/login", headers=headers).get_data(as_text=True)
    token = CSRF_INPUT.search(page).group(1)
    data = {"csrf_token": token, "email": email, "password": password}
    return client.post("/auth/login", data=data, headers=headers)


def guess(client, count: int, email: str = "ada@example.com") -> list[int]:
    """``count`` wrong passwords for ``email``, each from a different address."""
    return [
        sign_in(client, f"203.0.113.{n}", email, f"wrong guess {n}").status_code
        for n in range(1, count + 1)
    ]


def test_failed_sign_ins_for_one_account_from_many_addresses_are_refused_after_the_limit(
    app, client, accounts
):
    statuses = guess(client, 20)
    assert statuses[:LIMIT] == [200] * LIMIT  # "Wrong email or password."
    assert statuses[LIMIT:] == [429] * (20 - LIMIT)

    refused = sign_in(client, "198.51.100.7", "ada@example.com", PASSWORD)
    assert refused.status_code == 429
    assert "Too many failed sign-ins for this account" in refused.get_data(as_text=True)


def test_another_account_signs_in_while_one_is_throttled(app, client, accounts):
    guess(client, LIMIT + 1)
    assert sign_in(client, "203.0.113.1", "bob@example.com", PASSWORD).status_code == 302


def test_the_address_is_counted_however_it_is_spelt(app, client, accounts):
    guess(client, LIMIT)
    spelt_otherwise = sign_in(client, "203.0.113.99", "  ADA@Example.com ", "wrong again")
    assert spelt_otherwise.status_code == 429


def test_the_owner_signs_in_again_once_the_window_ends(app, client, accounts):
    guess(client, LIMIT)
    refused = sign_in(client, "198.51.100.7", "ada@example.com", PASSWORD)
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert wait <= WINDOW_SECONDS
    deadline = time.monotonic() + wait + 3
    while (
        response := sign_in(client, "198.51.100.7", "ada@example.com", PASSWORD)
    ).status_code == 429:
        assert time.monotonic() < deadline, "still refused long after the window"
        time.sleep(0.2)
    assert response.status_code == 302
    assert client.get("/dashboard").status_code == 200
