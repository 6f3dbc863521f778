"""Forgot-password, resend-verification and sign-up answer alike for known and unknown
addresses: the same page, and no wait for the mail server.

The mail server here stalls every message at DATA until the test lets it go.
Answers that came only after the mail was sent would show, by their delay,
which addresses have accounts; so each answer for a known address must arrive
while its message is still stuck at the server.
"""

from __future__ import annotations

import re

import pytest
import requests

from ..conftest import CSRF_INPUT, sign_up_form
from ..mailbox import GatedMailbox, SmtpServer
from ..streaming import embedded_site

# Far longer than any answer may take: a request that waits for the mail server waits this.
MAIL_TIMEOUT = "60"
ANSWER_TIMEOUT = 10


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer(GatedMailbox()) as server:
        yield server


@pytest.fixture(scope="module")
def site(tmp_path_factory, smtp):
    """A gunicorn site (gevent worker) with ada@example.com, sending mail to ``smtp``."""
    with embedded_site(
        tmp_path_factory.mktemp("enumeration"),
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp.port),
        MAIL_USE_TLS="0",
        MAIL_TIMEOUT=MAIL_TIMEOUT,
    ) as running:
        yield running["url"]


@pytest.fixture
def mailbox(smtp):
    yield smtp.mailbox
    smtp.mailbox.release()  # never leave a sender stuck for the next test


def form_post(url: str, page: str, action: str, **data) -> requests.Response:
    with requests.Session() as visitor:
        form = visitor.get(f"{url}{page}", timeout=ANSWER_TIMEOUT).text
        token = CSRF_INPUT.search(form).group(1)
        return visitor.post(
            f"{url}{action}", data={"csrf_token": token, **data}, timeout=ANSWER_TIMEOUT
        )


def page_for(response: requests.Response, address: str) -> str:
    """The page a visitor sees, with the address shown back and the form token set aside."""
    assert response.status_code == 200
    page = re.sub(r'(name="csrf_token"[^>]*value=")[^"]+', r"\1", response.text)
    return page.replace(address, "ADDRESS")


def register(url: str, email: str, name: str) -> requests.Response:
    return form_post(url, "/auth/register", "/auth/register", **sign_up_form(email, name))


def test_forgot_password_answers_alike_and_before_the_mail_is_sent(site, mailbox):
    mailbox.hold()
    known = form_post(site, "/auth/forgot", "/auth/forgot", email="Ada@Example.com")
    unknown = form_post(site, "/auth/forgot", "/auth/forgot", email="Nobody@Example.com")

    mailbox.wait_until_waiting(1)  # the reset mail is on its way, stuck at the server
    assert page_for(known, "ada@example.com") == page_for(unknown, "nobody@example.com")
    mailbox.release()
    mailbox.wait_for("ada@example.com", "Reset your password")


def test_sign_up_with_a_taken_address_answers_like_a_new_one_before_any_mail(site, mailbox):
    mailbox.hold()
    taken = register(site, "Ada@Example.com", "Impostor")
    new = register(site, "Grace@Example.com", "Grace")

    mailbox.wait_until_waiting(2)  # the owner's notice and the new account's link
    assert page_for(taken, "ada@example.com") == page_for(new, "grace@example.com")
    mailbox.release()
    mailbox.wait_for("ada@example.com", "Someone tried to sign up")
    mailbox.wait_for("grace@example.com", "Confirm your email")


def test_resend_verification_answers_alike_and_before_the_mail_is_sent(site, mailbox):
    assert register(site, "uma@example.com", "Uma").status_code == 200
    mailbox.wait_for("uma@example.com", "Confirm your email")

    mailbox.hold()
    known = form_post(site, "/auth/verify", "/auth/verify", email="UMA@example.com")
    unknown = form_post(site, "/auth/verify", "/auth/verify", email="NOBODY@example.com")

    mailbox.wait_until_waiting(1)
    assert page_for(known, "uma@example.com") == page_for(unknown, "nobody@example.com")
    mailbox.release()
    mailbox.wait_for("uma@example.com", "Confirm your email", count=2)
