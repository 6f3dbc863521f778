"""Driving Pulseboard like a browser in the OAuth tests: sign in, read pages, act on forms."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import requests
from sqlalchemy import select

from pulseboard.auth.passwords import hash_password
from pulseboard.database import utcnow
from pulseboard.extensions import db
from pulseboard.models import OAuthIdentity, User

from .conftest import CSRF_INPUT, PASSWORD
from .oauth_provider import LoopbackProvider

FLASH = re.compile(r'<div class="alert-text">(.*?)</div>', re.S)
ACCOUNT_EMAIL = re.compile(r'id="account-email" type="email" value="([^"]*)"')
FORM = re.compile(r'<form method="post" action="([^"]+)">(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def provider_env(provider: LoopbackProvider) -> dict[str, str]:
    env = {}
    for name in ("google", "microsoft"):
        env[f"{name.upper()}_CLIENT_ID"] = f"{name}-client"
        env[f"{name.upper()}_CLIENT_SECRET"] = f"{name}-secret"
        env[f"{name.upper()}_SERVER_METADATA_URL"] = provider.metadata_url(name)
    for name, userinfo in (("github", "user"), ("facebook", "me?fields=id,name,email")):
        base = f"{provider.base_url}/{name}"
        env[f"{name.upper()}_CLIENT_ID"] = f"{name}-client"
        env[f"{name.upper()}_CLIENT_SECRET"] = f"{name}-secret"
        env[f"{name.upper()}_AUTHORIZE_URL"] = f"{base}/authorize"
        env[f"{name.upper()}_TOKEN_URL"] = f"{base}/token"
        env[f"{name.upper()}_USERINFO_URL"] = f"{base}/{userinfo}"
    env["GITHUB_EMAILS_URL"] = f"{provider.base_url}/github/user/emails"
    env.update(
        APPLE_CLIENT_ID="apple-client",
        APPLE_TEAM_ID=provider.apple["team_id"],
        APPLE_KEY_ID=provider.apple["key_id"],
        APPLE_PRIVATE_KEY=provider.apple_pem,
        APPLE_SERVER_METADATA_URL=provider.metadata_url("apple"),
    )
    return env


def add_user(site, email="ada@example.com", password=True, **fields) -> int:
    with site.app.app_context():
        user = User(
            email=email,
            display_name=fields.pop("display_name", "Ada"),
            password_hash=hash_password(PASSWORD) if password else None,
            **{"email_verified_at": utcnow(), **fields},
        )
        db.session.add(user)
        db.session.commit()
        return user.id


def add_identity(site, user_id: int, provider="google", subject="subject-1") -> int:
    with site.app.app_context():
        identity = OAuthIdentity(provider=provider, subject=subject, user_id=user_id)
        db.session.add(identity)
        db.session.commit()
        return identity.id


def identities(site) -> list[tuple[str, str, int]]:
    with site.app.app_context():
        rows = db.session.scalars(select(OAuthIdentity).order_by(OAuthIdentity.id))
        return [(i.provider, i.subject, i.user_id) for i in rows]


def user_by_email(site, email: str) -> User | None:
    with site.app.app_context():
        return db.session.scalar(select(User).filter_by(email=email))


def oauth_sign_in(browser, site, provider_name: str, **params) -> requests.Response:
    response = browser.get(f"{site.url}/auth/oauth/{provider_name}/start", params=params)
    form = FORM.search(response.text) if response.status_code == 200 else None
    if form and not response.url.startswith(site.url):
        # Apple's form_post: a cross-site POST, which carries no SameSite=Lax cookie.
        posted = requests.post(
            html.unescape(form.group(1)),
            data={k: html.unescape(v) for k, v in HIDDEN.findall(form.group(2))},
            allow_redirects=False,
            timeout=10,
        )
        assert posted.status_code == 303
        browser.cookies.update(posted.cookies)
        response = browser.get(urljoin(posted.url, posted.headers["Location"]))
    return response


def password_sign_in(browser, site, email="ada@example.com") -> None:
    token = CSRF_INPUT.search(browser.get(f"{site.url}/auth/login").text).group(1)
    response = browser.post(
        f"{site.url}/auth/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token},
    )
    assert signed_in_as(browser, site) == email, flashes(response)


def signed_in_as(browser, site) -> str | None:
    response = browser.get(f"{site.url}/settings/", allow_redirects=False)
    if response.status_code != 200:
        return None
    return html.unescape(ACCOUNT_EMAIL.search(response.text).group(1)) or "(no email)"


def flashes(response) -> str:
    return " | ".join(html.unescape(m.strip()) for m in FLASH.findall(response.text))


def unlink(browser, site, provider_name: str, identity_id: int) -> requests.Response:
    page = browser.get(f"{site.url}/settings/")
    token = CSRF_INPUT.search(page.text).group(1)
    return browser.post(
        f"{site.url}/auth/oauth/{provider_name}/unlink",
        data={"csrf_token": token, "identity_id": identity_id},
    )


def provider_answer(browser, site, provider_name: str, **params) -> str:
    """Start a sign-in and let the provider approve it: the callback URL, not yet visited."""
    start = browser.get(
        f"{site.url}/auth/oauth/{provider_name}/start", params=params, allow_redirects=False
    )
    assert start.status_code == 302, start.status_code
    answer = browser.get(start.headers["Location"], allow_redirects=False)
    assert answer.status_code == 302, answer.status_code
    callback = answer.headers["Location"]
    assert callback.startswith(f"{site.url}/auth/oauth/{provider_name}/callback?"), callback
    return callback
