"""OAuth/OIDC sign-in, linking and unlinking, over real HTTP against a provider on loopback.

Pulseboard and the provider (tests/oauth_provider.py, built on Authlib's server
side) each run on their own loopback port; a ``requests.Session`` plays the
browser, following redirects between them.  For Apple's form_post it posts the
provider's form without the site's cookies, as a browser does with a
cross-site POST under SameSite=Lax.
"""

from __future__ import annotations

import html
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import select

import pulseboard.auth.fresh as fresh_module
from pulseboard.config import ConfigError, load_config
from pulseboard.extensions import db
from pulseboard.models import OAuthIdentity

from .oauth_browser import (
    add_identity,
    add_user,
    flashes,
    identities,
    oauth_sign_in,
    password_sign_in,
    provider_env,
    signed_in_as,
    unlink,
    user_by_email,
)
from .oauth_provider import LoopbackProvider, ServerThread, new_apple_key
from .oauth_provider_models import TENANT_A, TENANT_B


@pytest.fixture
def provider():
    key, pem = new_apple_key()
    loopback = LoopbackProvider(key, "TEAM123456", key.kid)
    loopback.apple_pem = pem
    thread = loopback.start()
    yield loopback
    thread.stop()


@pytest.fixture
def make_site(make_app, provider):
    """Pulseboard served on a loopback port, with every provider pointed at ``provider``."""
    threads = []

    def start(**env):
        app = make_app(**{**provider_env(provider), **env})
        threads.append(ServerThread(app))
        # Redirect URIs are built on PUBLIC_URL: this server's own, known once it listens.
        app.config["PUBLIC_URL"] = threads[-1].url
        return SimpleNamespace(app=app, url=threads[-1].url)

    yield start
    for thread in threads:
        thread.stop()


@pytest.fixture
def site(make_site):
    return make_site()


@pytest.fixture
def browser():
    with requests.Session() as session:
        yield session


@pytest.fixture
def stale_login(monkeypatch):
    """Make every sign-in look an hour old, so fresh-login checks fail."""

    def make_stale():
        real_time = fresh_module.time.time
        clock = SimpleNamespace(time=lambda: real_time() + 3600)
        monkeypatch.setattr(fresh_module, "time", clock)

    return make_stale


# --- Sign-in buttons and configuration ------------------------------------------------


def test_sign_in_page_shows_buttons_only_for_enabled_providers(make_app):
    app = make_app(GITHUB_CLIENT_ID="id", GITHUB_CLIENT_SECRET="secret")
    page = app.test_client().get("/auth/login?next=/live").get_data(as_text=True)
    assert "Continue with GitHub" in page
    assert "/auth/oauth/github/start?next=/live" in page
    for label in ("Google", "Facebook", "Microsoft", "Apple"):
        assert f"Continue with {label}" not in page


def test_half_set_credentials_stop_start_up_naming_the_missing_variable():
    with pytest.raises(ConfigError, match="GOOGLE_CLIENT_SECRET"):
        load_config({"APP_ENV": "test", "GOOGLE_CLIENT_ID": "id"})
    with pytest.raises(ConfigError, match="APPLE_KEY_ID"):
        load_config({"APP_ENV": "test", "APPLE_CLIENT_ID": "id", "APPLE_TEAM_ID": "T"})


def test_providers_are_off_without_credentials():
    assert load_config({"APP_ENV": "test"})["OAUTH_PROVIDERS"] == {}


# --- Signing in -------------------------------------------------------------------------


def test_google_sign_in_creates_a_verified_user(site, browser, provider):
    provider.accounts["google"].email = "new@example.com"
    response = oauth_sign_in(browser, site, "google")
    assert "Welcome, Ada Lovelace." in flashes(response)
    assert signed_in_as(browser, site) == "new@example.com"
    assert user_by_email(site, "new@example.com").email_verified_at is not None
    assert identities(site) == [("google", "subject-1", 1)]


def test_known_identity_signs_in_the_same_user(site, browser, provider):
    user_id = add_user(site, email="ada@example.com")
    add_identity(site, user_id, "google", "subject-1")
    provider.accounts["google"].email = "changed@example.com"
    response = oauth_sign_in(browser, site, "google")
    assert "Signed in with Google." in flashes(response)
    assert signed_in_as(browser, site) == "ada@example.com"


def test_verified_email_links_the_existing_password_account(site, browser):
    user_id = add_user(site, email="ada@example.com")
    response = oauth_sign_in(browser, site, "google")
    assert "Google is now linked" in flashes(response)
    assert signed_in_as(browser, site) == "ada@example.com"
    assert identities(site) == [("google", "subject-1", user_id)]


def test_unverified_email_neither_links_nor_signs_in(site, browser, provider):
    add_user(site, email="ada@example.com")
    provider.accounts["google"].email_verified = False
    response = oauth_sign_in(browser, site, "google")
    assert "Sign in with your password, then link Google" in flashes(response)
    assert signed_in_as(browser, site) is None
    assert identities(site) == []


def test_facebook_email_never_opens_an_existing_account(site, browser):
    add_user(site, email="ada@example.com")
    response = oauth_sign_in(browser, site, "facebook")
    assert "An account with this email already exists" in flashes(response)
    assert signed_in_as(browser, site) is None


def test_an_unverified_provider_email_stays_off_the_new_account(site, browser, provider):
    """Facebook vouches for no address: it must not reserve fb@example.com for anyone."""
    provider.accounts["facebook"].email = "fb@example.com"
    oauth_sign_in(browser, site, "facebook")
    assert signed_in_as(browser, site) == "(no email)"
    assert user_by_email(site, "fb@example.com") is None
    with site.app.app_context():
        assert db.session.scalar(select(OAuthIdentity.email)) == "fb@example.com"


def test_a_verified_provider_email_claims_an_unverified_account_and_drops_its_password(
    site, browser, provider
):
    """Someone registered ada@example.com without proving it; Ada proves it via Google."""
    squatter = add_user(site, email="ada@example.com", email_verified_at=None)
    oauth_sign_in(browser, site, "google")
    assert signed_in_as(browser, site) == "ada@example.com"
    claimed = user_by_email(site, "ada@example.com")
    assert claimed.id == squatter
    assert claimed.password_hash is None  # the squatter's password no longer opens it
    assert claimed.email_verified_at is not None


def test_github_uses_the_primary_verified_address_from_user_emails(site, browser, provider):
    provider.accounts["github"].extra_emails = [
        {"email": "other@example.com", "primary": False, "verified": True}
    ]
    user_id = add_user(site, email="ada@example.com")
    oauth_sign_in(browser, site, "github")
    assert signed_in_as(browser, site) == "ada@example.com"
    assert identities(site) == [("github", "1", user_id)]


def test_microsoft_any_tenant_signs_in(site, browser, provider):
    provider.accounts["microsoft"].tid = TENANT_B
    oauth_sign_in(browser, site, "microsoft")
    assert signed_in_as(browser, site) == "ada@example.com"


def test_microsoft_issuer_naming_another_tenant_is_refused(site, browser, provider):
    provider.id_token_overrides["microsoft"] = {"tid": TENANT_B}  # iss still names tenant A
    response = oauth_sign_in(browser, site, "microsoft")
    assert "Microsoft sign-in could not be completed" in flashes(response)
    assert signed_in_as(browser, site) is None


def test_microsoft_single_tenant_refuses_other_tenants(make_site, browser, provider):
    site = make_site(MICROSOFT_TENANT=TENANT_A)
    provider.accounts["microsoft"].tid = TENANT_B
    response = oauth_sign_in(browser, site, "microsoft")
    assert "Microsoft sign-in could not be completed" in flashes(response)
    assert signed_in_as(browser, site) is None


def test_apple_form_post_signs_in_with_a_runtime_client_secret(site, browser, provider):
    provider.accounts["apple"].name = "Grace Hopper"
    response = oauth_sign_in(browser, site, "apple")
    assert "Welcome, Grace Hopper." in flashes(response)
    assert signed_in_as(browser, site) == "ada@example.com"
    assert user_by_email(site, "ada@example.com").email_verified_at is not None
    assert provider.apple["verified_secrets"] == 1
    assert "oauth_apple_post" not in browser.cookies


def test_apple_link_keeps_the_session_across_the_cross_site_post(site, browser):
    user_id = add_user(site, email="ada@example.com")
    password_sign_in(browser, site)
    response = oauth_sign_in(browser, site, "apple", intent="link", next="/settings/")
    assert "Apple is now linked to your account." in flashes(response)
    assert signed_in_as(browser, site) == "ada@example.com"
    assert identities(site) == [("apple", "subject-1", user_id)]


def test_disabled_user_is_refused(site, browser):
    user_id = add_user(site, disabled=True)
    add_identity(site, user_id, "google", "subject-1")
    response = oauth_sign_in(browser, site, "google")
    assert "This account is disabled" in flashes(response)
    assert signed_in_as(browser, site) is None


# --- Refusals -------------------------------------------------------------------------


def test_forged_state_is_refused(site, browser):
    response = browser.get(
        f"{site.url}/auth/oauth/google/callback", params={"code": "x", "state": "forged"}
    )
    assert "did not start here" in flashes(response)
    assert signed_in_as(browser, site) is None


def test_mismatched_nonce_is_refused(site, browser, provider):
    provider.id_token_overrides["google"] = {"nonce": "someone-elses"}
    response = oauth_sign_in(browser, site, "google")
    assert "Google sign-in could not be completed" in flashes(response)
    assert signed_in_as(browser, site) is None
    assert identities(site) == []


def test_token_endpoint_refusal_is_reported(make_site, browser):
    site = make_site(GOOGLE_CLIENT_SECRET="not-the-secret")
    response = oauth_sign_in(browser, site, "google")
    assert "Google sign-in could not be completed" in flashes(response)
    assert signed_in_as(browser, site) is None


def test_access_denied_at_the_provider_is_reported(site, browser, provider):
    provider.deny.add("github")
    response = oauth_sign_in(browser, site, "github")
    assert "GitHub sign-in was cancelled." in flashes(response)
    assert response.url == f"{site.url}/auth/login"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_next_outside_the_site_is_ignored(site, browser, target):
    response = oauth_sign_in(browser, site, "google", next=target)
    assert response.url.startswith(site.url)
    assert "evil" not in response.url


def test_next_inside_the_site_is_followed(site, browser):
    response = oauth_sign_in(browser, site, "google", next="/live")
    assert response.url == f"{site.url}/live"


# --- Linking and unlinking ------------------------------------------------------------


def test_linking_from_settings_adds_the_identity(site, browser, provider):
    user_id = add_user(site, email="ada@example.com")
    password_sign_in(browser, site)
    provider.accounts["github"].email = None
    response = oauth_sign_in(browser, site, "github", intent="link", next="/settings/")
    assert "GitHub is now linked to your account." in flashes(response)
    assert identities(site) == [("github", "1", user_id)]


def test_linking_needs_a_fresh_login(site, browser, stale_login):
    add_user(site)
    password_sign_in(browser, site)
    stale_login()
    response = oauth_sign_in(browser, site, "github", intent="link")
    assert response.url.startswith(f"{site.url}/auth/confirm")
    assert identities(site) == []


def test_identity_linked_to_another_user_is_refused(site, browser):
    owner = add_user(site, email="owner@example.com")
    add_identity(site, owner, "google", "subject-1")
    add_user(site, email="ada@example.com")
    password_sign_in(browser, site)
    response = oauth_sign_in(browser, site, "google", intent="link")
    assert "already linked to another account" in flashes(response)
    assert identities(site) == [("google", "subject-1", owner)]


def test_unlinking_the_last_way_in_is_refused(site, browser):
    oauth_sign_in(browser, site, "google")  # a new account with no password
    settings = browser.get(f"{site.url}/settings/").text
    assert "This is your only way to sign in" in settings
    response = unlink(browser, site, "google", 1)
    assert "it would leave no way to sign in" in flashes(response)
    assert len(identities(site)) == 1


def test_unlinking_works_while_a_password_remains(site, browser):
    user_id = add_user(site)
    identity_id = add_identity(site, user_id, "google", "subject-1")
    password_sign_in(browser, site)
    response = unlink(browser, site, "google", identity_id)
    assert "Google is no longer linked" in flashes(response)
    assert identities(site) == []


def test_provider_only_user_confirms_with_their_provider(site, browser, monkeypatch, stale_login):
    oauth_sign_in(browser, site, "google")
    stale_login()
    confirm = browser.get(f"{site.url}/auth/confirm", params={"next": "/settings/"}).text
    assert "/auth/oauth/google/start?intent=reauth" in html.unescape(confirm)
    monkeypatch.undo()  # the clock is right again: the new confirmation counts
    response = oauth_sign_in(browser, site, "google", intent="reauth", next="/settings/")
    assert "you are confirmed" in flashes(response)
    assert response.url == f"{site.url}/settings/"


def test_confirming_with_someone_elses_provider_account_is_refused(site, browser, provider):
    oauth_sign_in(browser, site, "google")
    provider.accounts["google"].sub = "someone-else"
    response = oauth_sign_in(browser, site, "google", intent="reauth", next="/settings/")
    assert "not linked to the account you are signed in to" in flashes(response)
