"""Email and password accounts, with mail through a real SMTP server on loopback."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import itsdangerous.timed
import pytest
from sqlalchemy import select

from pulseboard.auth.links import RESET, VERIFY, make_link_token
from pulseboard.extensions import db
from pulseboard.models import ServerSession, User

from .conftest import CSRF_INPUT, PASSWORD, AuthActions, sign_up_form

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def app(make_app, smtp):
    return make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(smtp.port), MAIL_USE_TLS="0")


def form_post(client, page: str, action: str, **data):
    token = CSRF_INPUT.search(client.get(page).get_data(as_text=True)).group(1)
    return client.post(action, data={"csrf_token": token, **data})


def register(client, email="grace@example.com", name="Grace"):
    return form_post(client, "/auth/register", "/auth/register", **sign_up_form(email, name))


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def user(app, email) -> User | None:
    with app.app_context():
        return db.session.scalar(select(User).where(User.email == email))


def test_sign_up_mails_a_link_that_verifies_once_then_sign_in_works(app, client, mailbox):
    response = register(client)
    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302  # not signed in yet

    link = mailbox.link_in(mailbox.wait_for("grace@example.com", "Confirm your email"))
    confirmed = client.get(path_of(link), follow_redirects=True)
    assert "Your email address is confirmed" in confirmed.get_data(as_text=True)
    assert user(app, "grace@example.com").email_verified_at is not None

    again = client.get(path_of(link), follow_redirects=True)
    assert "already been used" in again.get_data(as_text=True)

    auth = AuthActions(client)
    assert auth.login("grace@example.com").status_code == 302
    assert client.get("/dashboard").status_code == 200


def test_an_unverified_account_cannot_sign_in_and_gets_a_new_link(app, client, mailbox):
    register(client)
    response = AuthActions(client).login("grace@example.com", follow=True)
    assert "Confirm your email address first" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302
    mailbox.wait_for("grace@example.com", "Confirm your email", count=2)


def test_sign_up_with_a_taken_address_looks_the_same_and_warns_the_owner(
    app, client, mailbox, make_user
):
    make_user(email="ada@example.com")
    response = register(client, email="ada@example.com", name="Impostor")
    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)
    mailbox.wait_for("ada@example.com", "Someone tried to sign up")
    with app.app_context():
        assert db.session.scalar(select(db.func.count(User.id))) == 1
        assert db.session.scalar(select(User.display_name)) == "Ada"


def test_password_reset_works_once_and_signs_out_every_session(app, mailbox, make_user):
    make_user(email="ada@example.com")
    elsewhere = app.test_client()
    AuthActions(elsewhere).login()
    assert elsewhere.get("/dashboard").status_code == 200

    client = app.test_client()
    response = form_post(client, "/auth/forgot", "/auth/forgot", email="ada@example.com")
    assert "If ada@example.com belongs to an account" in response.get_data(as_text=True)
    link = mailbox.link_in(mailbox.wait_for("ada@example.com", "Reset your password"))

    page = client.get(path_of(link))
    assert page.status_code == 200
    done = form_post(
        client, path_of(link), path_of(link), password=NEW_PASSWORD, confirm=NEW_PASSWORD
    )
    assert done.status_code == 302
    assert elsewhere.get("/dashboard").status_code == 302  # signed out

    reused = client.get(path_of(link), follow_redirects=True)
    assert "already been used" in reused.get_data(as_text=True)
    auth = AuthActions(app.test_client())
    assert "Wrong email or password" in auth.login(follow=True).get_data(as_text=True)
    assert auth.login(password=NEW_PASSWORD).status_code == 302


def test_reset_for_an_unknown_address_says_the_same_and_sends_nothing(
    app, client, mailbox, make_user
):
    response = form_post(client, "/auth/forgot", "/auth/forgot", email="nobody@example.com")
    assert "If nobody@example.com belongs to an account" in response.get_data(as_text=True)
    # Mail leaves in the background: a reset for a real account, asked after, is the
    # marker that anything sent for the unknown address would have come by now.
    make_user(email="ada@example.com")
    form_post(client, "/auth/forgot", "/auth/forgot", email="ada@example.com")
    mailbox.wait_for("ada@example.com", "Reset your password")
    # Each mail has its own sender thread, so the marker could overtake an earlier one:
    # once every sender is done, whatever was sent has been received.
    for sender in [t for t in threading.enumerate() if t.name == "mail"]:
        sender.join(10)
    assert mailbox.subjects() == [("ada@example.com", mailbox.messages[0]["Subject"])]


def test_expired_tampered_and_cross_purpose_links_are_refused(app, client, make_user, monkeypatch):
    user_id = make_user(email="ada@example.com")
    with app.test_request_context():
        account = db.session.get(User, user_id)
        real_time = time.time
        monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real_time() - 3 * 3600)
        expired = make_link_token(account, RESET)
        monkeypatch.setattr(itsdangerous.timed.time, "time", real_time)
        verify_token = make_link_token(account, VERIFY)
        valid = make_link_token(account, RESET)

    def outcome(token):
        return client.get(f"/auth/reset/{token}", follow_redirects=True).get_data(as_text=True)

    assert "expired" in outcome(expired)
    assert "not valid" in outcome(valid[:-3] + ("abc" if not valid.endswith("abc") else "xyz"))
    assert "not valid" in outcome(verify_token)  # a verification link is no reset link
    assert client.get(f"/auth/reset/{valid}").status_code == 200


def test_wrong_password_and_unknown_email_get_the_same_answer(app, client, make_user):
    make_user(email="ada@example.com")
    auth = AuthActions(client)
    wrong = auth.login("ada@example.com", "not the password", follow=True).get_data(as_text=True)
    unknown = auth.login("who@example.com", PASSWORD, follow=True).get_data(as_text=True)
    assert "Wrong email or password." in wrong and "Wrong email or password." in unknown


def test_a_disabled_user_cannot_sign_in(app, client, make_user):
    make_user(email="ada@example.com", disabled=True)
    response = AuthActions(client).login(follow=True)
    assert "Wrong email or password." in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_changing_the_email_needs_a_fresh_sign_in_and_the_new_mailbox(app, mailbox, make_user):
    make_user(email="ada@example.com")
    app.config["AUTH_FRESH_MINUTES"] = 0  # any sign-in is already too old
    client = app.test_client()
    AuthActions(client).login()
    response = form_post(client, "/settings/", "/settings/email", email="ada@new.example")
    assert response.status_code == 302
    assert response.location.startswith("/auth/confirm")
    assert user(app, "ada@example.com") is not None

    app.config["AUTH_FRESH_MINUTES"] = 10
    form_post(client, "/auth/confirm", "/auth/confirm", password=PASSWORD)
    response = form_post(client, "/settings/", "/settings/email", email="ada@new.example")
    assert response.status_code == 302 and response.location == "/settings/"
    assert user(app, "ada@example.com") is not None  # not yet: the link decides
    link = mailbox.link_in(mailbox.wait_for("ada@new.example", "Confirm your new email"))
    client.get(path_of(link))
    assert user(app, "ada@new.example") is not None


def test_removing_the_only_password_is_refused(app, client, make_user):
    make_user(email="ada@example.com")
    AuthActions(client).login()
    response = form_post(client, "/settings/", "/settings/password/remove")
    assert response.status_code == 302
    assert user(app, "ada@example.com").password_hash is not None
    page = client.get("/settings/").get_data(as_text=True)
    assert "the password is your only way in" in page


def test_sign_out_everywhere_else_ends_the_other_sessions_only(app, make_user):
    make_user(email="ada@example.com")
    laptop, phone = app.test_client(), app.test_client()
    AuthActions(laptop).login()
    AuthActions(phone).login()
    page = laptop.get("/settings/").get_data(as_text=True)
    assert page.count("This browser") == 1
    assert "Sign out everywhere else" in page
    form_post(laptop, "/settings/", "/settings/sessions/others/end")
    assert laptop.get("/dashboard").status_code == 200
    assert phone.get("/dashboard").status_code == 302


def test_one_cannot_end_someone_elses_session(app, make_user):
    make_user(email="ada@example.com")
    make_user(email="bob@example.com", name="Bob")
    ada, bob = app.test_client(), app.test_client()
    AuthActions(ada).login()
    AuthActions(bob).login("bob@example.com")
    with app.app_context():
        bob_user = db.session.scalar(select(User.id).where(User.email == "bob@example.com"))
        bob_session = db.session.scalar(
            select(ServerSession.id).where(ServerSession.user_id == bob_user)
        )
    form_post(ada, "/settings/", f"/settings/sessions/{bob_session}/end")
    assert bob.get("/dashboard").status_code == 200


def test_changing_the_password_signs_out_other_sessions(app, make_user):
    make_user(email="ada@example.com")
    laptop, phone = app.test_client(), app.test_client()
    AuthActions(laptop).login()
    AuthActions(phone).login()
    response = form_post(
        laptop, "/settings/", "/settings/password", password=NEW_PASSWORD, confirm=NEW_PASSWORD
    )
    assert response.status_code == 302
    assert laptop.get("/dashboard").status_code == 200
    assert phone.get("/dashboard").status_code == 302


def test_an_admin_disabling_a_user_ends_their_sessions(app, make_user):
    make_user(email="root@example.com", name="Root", admin=True)
    target = make_user(email="ada@example.com")
    admin, victim = app.test_client(), app.test_client()
    AuthActions(admin).login("root@example.com")
    AuthActions(victim).login()
    response = form_post(admin, "/admin/", f"/admin/users/{target}/disabled", disabled="1")
    assert response.status_code == 302
    assert victim.get("/dashboard").status_code == 302
    assert "Wrong email or password" in AuthActions(victim).login(follow=True).get_data(
        as_text=True
    )
    form_post(admin, "/admin/", f"/admin/users/{target}/disabled", disabled="0")
    assert AuthActions(victim).login().status_code == 302


def test_members_cannot_disable_anyone(app, make_user):
    make_user(email="ada@example.com")
    other = make_user(email="bob@example.com", name="Bob")
    client = app.test_client()
    AuthActions(client).login()
    response = form_post(client, "/settings/", f"/admin/users/{other}/disabled", disabled="1")
    assert response.status_code == 403
    assert not user(app, "bob@example.com").disabled


def test_signed_in_pages_are_not_cached(app, client, make_user):
    make_user()
    AuthActions(client).login()
    assert client.get("/settings/").headers["Cache-Control"] == "no-store"


def test_proxy_fix_trusts_the_configured_number_of_hops(make_app, make_user):
    app = make_app(PROXY_FIX_HOPS="1")
    make_user()
    client = app.test_client()
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    token = CSRF_INPUT.search(client.get("/auth/login", headers=headers).get_data(as_text=True))
    client.post(
        "/auth/login",
        data={"email": "ada@example.com", "password": PASSWORD, "csrf_token": token.group(1)},
        headers=headers,
    )
    with app.app_context():
        assert db.session.scalar(select(ServerSession.ip_address)) == "203.0.113.9"
