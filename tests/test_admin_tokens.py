"""API tokens from the admin page, on a running site: an admin creates a read token
(shown once), a script streams with it over Server-Sent Events, and revoking it on
the page ends that stream. Members cannot reach the page; a forged form is refused."""

from __future__ import annotations

import re

import pytest

from .pipeline import wait_for
from .sse_client import EventStream, is_marker, marker
from .streaming import CSRF, embedded_site, ingest, signed_in_session

NEW_TOKEN = re.compile(r'id="new-token"[^>]*value="(pbk_[^"]+)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with embedded_site(
        tmp_path_factory.mktemp("admin-tokens"), STREAM_RIGHTS_CHECK_SECONDS="1"
    ) as site:
        yield site


def csrf(browser, url: str) -> str:
    return CSRF.search(browser.get(f"{url}/admin/tokens", timeout=10).text).group(1)


def create(browser, url: str, **fields: str):
    data = {"name": "Lobby kiosk", "scope": "read", "topics": "market.*", **fields}
    return browser.post(
        f"{url}/admin/tokens", data={**data, "csrf_token": csrf(browser, url)}, timeout=10
    )


def test_an_admin_creates_a_read_token_that_streams_until_revoked_on_the_page(site):
    url = site["url"]
    admin = signed_in_session(url, "ada@example.com")
    created = create(admin, url, name="Lobby kiosk", topics="market.*, system.metrics")
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    token = NEW_TOKEN.search(created.text).group(1)
    # Shown once: the list shows only its first characters.
    listing = admin.get(f"{url}/admin/tokens", timeout=10).text
    assert token not in listing
    assert token[:12] in listing and "Lobby kiosk" in listing
    token_id = int(re.search(r'data-token-id="(\d+)"', listing).group(1))

    # Its patterns, not the public topics' rules: audit is not one of them.
    outside = EventStream(site, "topics=audit", token=token)
    assert outside.response.status_code == 403
    outside.close()
    stream = EventStream(site, "topics=market.ticks", token=token)
    try:
        assert stream.response.status_code == 200
        ingest(url, site["token"], [marker("kiosk-1"), marker("kiosk-2")])
        events = stream.read_until(is_marker("kiosk-2"))
        assert [e["payload"]["marker"] for e in events] == ["kiosk-1", "kiosk-2"]

        revoked = admin.post(
            f"{url}/admin/tokens/{token_id}/revoke",
            data={"csrf_token": csrf(admin, url)},
            timeout=10,
        )
        assert revoked.status_code == 200 and "is revoked" in revoked.text
        wait_for(lambda: stream.next_event() is None, 15, message="the stream ended")
    finally:
        stream.close()
    again = EventStream(site, "topics=market.ticks", token=token)
    assert again.response.status_code == 401
    again.close()


def test_a_producer_token_from_the_page_publishes_but_cannot_read(site):
    url = site["url"]
    admin = signed_in_session(url, "ada@example.com")
    created = create(admin, url, name="feed", scope="produce", topics="market.*")
    token = NEW_TOKEN.search(created.text).group(1)
    assert ingest(url, token, [marker("from-page")])
    refused = EventStream(site, "topics=market.ticks", token=token)
    assert refused.response.status_code == 403
    refused.close()


def test_bad_patterns_are_refused_with_the_reason_and_no_token(site):
    url = site["url"]
    admin = signed_in_session(url, "ada@example.com")
    refused = create(admin, url, topics="market.[x]")
    assert refused.status_code == 400
    assert "is not a topic pattern" in refused.text
    assert not NEW_TOKEN.search(refused.text)


def test_members_cannot_reach_the_page_and_a_forged_form_is_refused(site):
    url = site["url"]
    member = signed_in_session(url, "bob@example.com")
    assert member.get(f"{url}/admin/tokens", timeout=10, allow_redirects=False).status_code in (
        302,
        403,
        404,
    )
    admin = signed_in_session(url, "ada@example.com")
    forged = admin.post(
        f"{url}/admin/tokens",
        data={"name": "x", "scope": "read", "topics": "*"},
        timeout=10,
    )
    assert forged.status_code == 400
    assert not NEW_TOKEN.search(forged.text)
