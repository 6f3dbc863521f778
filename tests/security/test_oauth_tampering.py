"""A provider that lies, or a callback that is not what it seems: every sign-in is refused.

Each test drives the whole flow over real HTTP (start → the loopback provider's
authorize → callback → token endpoint → id_token validation) and then looks at
what the user gets: not signed in, a clear error message, no account created
or linked.  The tampered id_tokens come from the provider's token endpoint
itself (``id_token_signers``), so they arrive the way a real one would.

Refusals checked elsewhere (tests/test_oauth.py): a forged state, a mismatched
nonce, a Microsoft issuer naming another tenant, an unverified email.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import func, select

from pulseboard.extensions import db
from pulseboard.models import User

from .. import test_oauth
from ..conftest import CSRF_INPUT
from ..oauth_browser import (
    add_user,
    flashes,
    identities,
    oauth_sign_in,
    password_sign_in,
    provider_answer,
    signed_in_as,
    user_by_email,
)
from ..oauth_provider_models import Account

# The OAuth tests' fixtures: the loopback provider, Pulseboard pointed at it, a browser.
provider = test_oauth.provider
make_site = test_oauth.make_site
site = test_oauth.site
browser = test_oauth.browser

OIDC_PROVIDERS = ["google", "microsoft", "apple"]
LABELS = {"google": "Google", "microsoft": "Microsoft", "apple": "Apple"}
ANOTHER_CLIENT = "another-client"


# --- Tokens the way an attacker would make them ----------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict) -> str:
    return b64url(json.dumps(value).encode())


def unsigned(header: dict, claims: dict, alg: str = "none") -> str:
    """A compact JWS with no signature at all.

    ``at_hash`` goes too: it is optional, and its hash follows ``alg``, so with it
    the token would be refused for a wrong hash whether or not the signature counts.
    """
    claims = {key: value for key, value in claims.items() if key != "at_hash"}
    return f"{b64json({**header, 'alg': alg})}.{b64json(claims)}."


def hs256(header: dict, claims: dict, secret: bytes) -> str:
    """A compact JWS MACed with HS256 under ``secret``, built by hand."""
    signing_input = f"{b64json({**header, 'alg': 'HS256'})}.{b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def serve_id_token(provider, flavour: str, make_token) -> list[str]:
    """From now on the token endpoint sends ``make_token(header, claims)`` as the id_token.

    ``header`` and ``claims`` are those of the honest id_token it would have sent.
    Returns the list of tokens actually sent, for the test to check it was used.
    """
    sent: list[str] = []

    def signer(header: dict, claims: dict) -> str:
        sent.append(make_token(header, claims))
        return sent[-1]

    provider.id_token_signers[flavour] = signer
    return sent


def signed_by_provider(provider, **claims):
    """Genuinely signed with the provider's own key (in its JWKS), with ``claims`` changed."""
    return lambda header, honest: jwt.encode(header, {**honest, **claims}, provider.key)


# --- What the user sees after a refusal ------------------------------------------------


def accounts_count(site) -> int:
    with site.app.app_context():
        return db.session.scalar(select(func.count(User.id)))


def assert_refused(response, site, browser, flavour: str) -> None:
    assert f"{LABELS[flavour]} sign-in could not be completed" in flashes(response)
    assert response.url == f"{site.url}/auth/login"
    assert signed_in_as(browser, site) is None
    assert identities(site) == []
    assert accounts_count(site) == 0


# --- The harness itself: an honest token through the same hook signs in -----------------


@pytest.mark.parametrize("with_azp", [False, True], ids=["as-issued", "with-our-azp"])
@pytest.mark.parametrize("flavour", OIDC_PROVIDERS)
def test_an_honest_id_token_through_the_tampering_hook_signs_in(
    site, browser, provider, flavour, with_azp
):
    """Control: re-signing the honest claims with the provider's key changes nothing.

    Nor does ``azp`` naming this client, as Google's tokens do.
    """
    claims = {"azp": f"{flavour}-client"} if with_azp else {}
    sent = serve_id_token(provider, flavour, signed_by_provider(provider, **claims))
    oauth_sign_in(browser, site, flavour)
    assert len(sent) == 1
    assert signed_in_as(browser, site) == "ada@example.com"
    assert identities(site) == [(flavour, "subject-1", 1)]


# --- Claims: audience, issuer, expiry ----------------------------------------------------


@pytest.mark.parametrize(
    "audience, ours_as_azp",
    [
        (ANOTHER_CLIENT, False),
        ([ANOTHER_CLIENT], False),
        (ANOTHER_CLIENT, True),  # "authorized party: you", audience: someone else
        ([ANOTHER_CLIENT, "{ours}"], True),  # for us, and for someone we do not know
    ],
    ids=["another", "another-in-a-list", "another-with-our-azp", "also-another-with-our-azp"],
)
@pytest.mark.parametrize("flavour", OIDC_PROVIDERS)
def test_id_token_for_another_client_is_refused(
    site, browser, provider, flavour, audience, ours_as_azp
):
    """A token the provider issued to some other app is no proof of sign-in to this one."""
    ours = f"{flavour}-client"
    if isinstance(audience, list):
        audience = [aud.format(ours=ours) for aud in audience]
    claims = {"aud": audience, **({"azp": ours} if ours_as_azp else {})}
    sent = serve_id_token(provider, flavour, signed_by_provider(provider, **claims))
    response = oauth_sign_in(browser, site, flavour)
    assert len(sent) == 1
    assert_refused(response, site, browser, flavour)


@pytest.mark.parametrize(
    "issuer",
    [
        "https://issuer.evil.example",
        "{base}/apple",  # another provider's issuer, signed with the same key
        "accounts.google.com.evil.example",  # Google's second spelling, lengthened
        "",
    ],
    ids=["unrelated", "another-provider", "lookalike", "empty"],
)
def test_google_id_token_from_another_issuer_is_refused(site, browser, provider, issuer):
    iss = issuer.format(base=provider.base_url)
    sent = serve_id_token(provider, "google", signed_by_provider(provider, iss=iss))
    response = oauth_sign_in(browser, site, "google")
    assert len(sent) == 1
    assert_refused(response, site, browser, "google")


@pytest.mark.parametrize("flavour", OIDC_PROVIDERS)
def test_expired_id_token_is_refused(site, browser, provider, flavour):
    now = int(time.time())
    expired = signed_by_provider(provider, iat=now - 7200, auth_time=now - 7200, exp=now - 3600)
    sent = serve_id_token(provider, flavour, expired)
    response = oauth_sign_in(browser, site, flavour)
    assert len(sent) == 1
    assert_refused(response, site, browser, flavour)


@pytest.mark.parametrize("flavour", OIDC_PROVIDERS)
def test_id_token_not_valid_yet_is_refused(site, browser, provider, flavour):
    not_before = int(time.time()) + 3600
    sent = serve_id_token(provider, flavour, signed_by_provider(provider, nbf=not_before))
    response = oauth_sign_in(browser, site, flavour)
    assert len(sent) == 1
    assert_refused(response, site, browser, flavour)


def test_id_token_without_an_expiry_is_refused(site, browser, provider):
    def no_exp(header, claims):
        claims.pop("exp")
        return jwt.encode(header, claims, provider.key)

    sent = serve_id_token(provider, "google", no_exp)
    response = oauth_sign_in(browser, site, "google")
    assert len(sent) == 1
    assert_refused(response, site, browser, "google")


# --- Signatures: none, HS256 key confusion, a key outside the JWKS ----------------------


@pytest.mark.parametrize("flavour", OIDC_PROVIDERS)
def test_unsigned_id_token_is_refused(site, browser, provider, flavour):
    """``alg: none`` with the honest claims: the token says who, but nobody signed it."""
    sent = serve_id_token(provider, flavour, unsigned)
    response = oauth_sign_in(browser, site, flavour)
    assert len(sent) == 1
    assert sent[0].endswith(".")
    assert_refused(response, site, browser, flavour)


@pytest.mark.parametrize("alg", ["None", "NONE", ""])
def test_unsigned_id_token_with_another_spelling_of_none_is_refused(site, browser, provider, alg):
    sent = serve_id_token(provider, "google", lambda h, c: unsigned(h, c, alg=alg))
    response = oauth_sign_in(browser, site, "google")
    assert len(sent) == 1
    assert_refused(response, site, browser, "google")


@pytest.mark.parametrize("flavour", ["google", "microsoft"])
def test_hs256_id_token_keyed_with_the_client_secret_is_refused(site, browser, provider, flavour):
    """Key confusion: the client secret is shared, so a MAC under it proves nothing.

    The header keeps the provider's ``kid``, so a verifier that picks the key by
    ``kid`` and the algorithm from the header would fall for it.
    """
    secret = provider.clients[f"{flavour}-client"].secret.encode()
    sent = serve_id_token(provider, flavour, lambda h, c: hs256(h, c, secret))
    response = oauth_sign_in(browser, site, flavour)
    assert len(sent) == 1
    header = json.loads(base64.urlsafe_b64decode(sent[0].split(".")[0] + "=="))
    assert (header["alg"], header["kid"]) == ("HS256", provider.key.kid)
    assert_refused(response, site, browser, flavour)


def test_hs256_id_token_keyed_with_the_providers_public_key_is_refused(site, browser, provider):
    """The classic confusion: the RSA public key (anyone can fetch it) as an HMAC secret."""
    public_pem = provider.key.as_pem(private=False)
    sent = serve_id_token(provider, "google", lambda h, c: hs256(h, c, public_pem))
    response = oauth_sign_in(browser, site, "google")
    assert len(sent) == 1
    assert_refused(response, site, browser, "google")


@pytest.fixture(scope="module")
def outside_key():
    """An RSA key the provider never published."""
    return RSAKey.generate_key(2048)


@pytest.mark.parametrize("flavour", OIDC_PROVIDERS)
@pytest.mark.parametrize(
    "kid",
    ["test-key-1", "rotated-key-2", None],
    ids=["published-kid", "unknown-kid", "no-kid"],
)
def test_id_token_signed_by_a_key_outside_the_jwks_is_refused(
    site, browser, provider, outside_key, flavour, kid
):
    """RS256 and well-formed, but the signature is not by any key the provider publishes."""
    assert provider.key.kid == "test-key-1"

    def forged(header, claims):
        header = {"alg": "RS256", **({"kid": kid} if kid else {})}
        return jwt.encode(header, claims, outside_key)

    sent = serve_id_token(provider, flavour, forged)
    response = oauth_sign_in(browser, site, flavour)
    assert len(sent) == 1
    assert_refused(response, site, browser, flavour)


# --- Callbacks: replayed, or from another browser ---------------------------------------


@pytest.mark.parametrize(
    "from_sign_in_page", [True, False], ids=["from-the-sign-in-page", "straight-to-start"]
)
def test_replayed_callback_is_refused(site, browser, from_sign_in_page):
    """The request that signed Ada in (her cookie then, the code, the state), sent again.

    The state served once, and the session id the request carried was replaced
    at sign-in: whoever holds a copy of that request holds nothing.
    """
    if from_sign_in_page:
        browser.get(f"{site.url}/auth/login")  # where the "Continue with Google" button is
    callback = provider_answer(browser, site, "google")
    cookies_at_callback = browser.cookies.copy()
    first = browser.get(callback)
    assert "Welcome, Ada Lovelace." in flashes(first)
    assert identities(site) == [("google", "subject-1", 1)]

    with requests.Session() as replay:
        replay.cookies.update(cookies_at_callback)
        again = replay.get(callback)
        assert "did not start here" in flashes(again)
        assert identities(site) == [("google", "subject-1", 1)]
        assert accounts_count(site) == 1
        assert again.url == f"{site.url}/auth/login"
        assert signed_in_as(replay, site) is None


def test_callback_replayed_in_the_same_browser_after_signing_out_is_refused(site, browser):
    callback = provider_answer(browser, site, "google")
    assert "Welcome, Ada Lovelace." in flashes(browser.get(callback))
    settings = browser.get(f"{site.url}/settings/").text
    browser.post(f"{site.url}/auth/logout", data={"csrf_token": CSRF_INPUT.search(settings)[1]})
    assert signed_in_as(browser, site) is None

    again = browser.get(callback)
    assert "did not start here" in flashes(again)
    assert signed_in_as(browser, site) is None
    assert accounts_count(site) == 1


def test_replayed_link_callback_in_the_same_browser_is_refused(site, browser):
    """Linking keeps the session, so only the state being spent stops a second use."""
    ada = add_user(site, email="ada@example.com")
    password_sign_in(browser, site)
    callback = provider_answer(browser, site, "google", intent="link", next="/settings/")
    assert "Google is now linked" in flashes(browser.get(callback))

    again = browser.get(callback)
    assert "did not start here" in flashes(again)
    assert signed_in_as(browser, site) == "ada@example.com"
    assert identities(site) == [("google", "subject-1", ada)]


@pytest.mark.parametrize("victim_signed_in", [False, True], ids=["signed-out", "signed-in"])
def test_callback_with_another_browsers_state_is_refused(site, browser, provider, victim_signed_in):
    """Mallory gets the provider's answer for her own account and sends the link to Ada.

    Followed by Ada's browser, it must neither sign Ada in as Mallory nor link
    Mallory's provider account to Ada's, even while Ada has a sign-in of her own
    under way.  In Mallory's browser, the same link works: it was a genuine answer.
    """
    if victim_signed_in:
        ada = add_user(site, email="ada@example.com")
        password_sign_in(browser, site)
    provider.accounts["google"] = Account(
        sub="mallory", email="mallory@example.com", name="Mallory"
    )
    with requests.Session() as mallory:
        callback = provider_answer(mallory, site, "google")

        # Ada's own sign-in (or linking) is under way: her session holds a state, not this one.
        intent = "link" if victim_signed_in else "login"
        start = f"{site.url}/auth/oauth/google/start"
        assert browser.get(start, params={"intent": intent}, allow_redirects=False).is_redirect
        response = browser.get(callback)
        assert "did not start here" in flashes(response)
        assert identities(site) == []
        if victim_signed_in:
            assert signed_in_as(browser, site) == "ada@example.com"
        else:
            assert signed_in_as(browser, site) is None
            assert accounts_count(site) == 0

        mallorys = mallory.get(callback)
        assert "Welcome, Mallory." in flashes(mallorys)
        assert signed_in_as(mallory, site) == "mallory@example.com"
    mallorys_account = user_by_email(site, "mallory@example.com")
    assert identities(site) == [("google", "mallory", mallorys_account.id)]
    if victim_signed_in:
        assert mallorys_account.id != ada
        assert signed_in_as(browser, site) == "ada@example.com"
