"""Server-side sessions: what the cookie carries, what the database keeps, when it ends."""

from datetime import timedelta

from sqlalchemy import select

from pulseboard.database import utcnow
from pulseboard.extensions import db
from pulseboard.models import ServerSession

from .conftest import PASSWORD


def session_cookie(client, app):
    return client.get_cookie(app.config["SESSION_COOKIE_NAME"])


def stored_sessions(app):
    with app.app_context():
        return db.session.scalars(select(ServerSession)).all()


def test_the_cookie_holds_only_a_random_id_and_the_database_only_its_hash(
    app, client, auth, make_user
):
    user_id = make_user()
    auth.login()
    cookie = session_cookie(client, app)
    assert cookie is not None and len(cookie.value) >= 40
    [record] = stored_sessions(app)
    assert record.user_id == user_id
    assert cookie.value not in record.session_id
    assert len(record.session_id) == 64  # sha256 hex


def test_session_cookie_is_httponly_and_samesite_lax(app, client, auth, make_user):
    make_user()
    response = auth.login()
    header = next(h for h in response.headers.getlist("Set-Cookie") if "session" in h)
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Secure" not in header  # test mode serves plain HTTP


def test_production_cookie_is_secure_and_host_prefixed(make_app, make_user):
    app = make_app(
        APP_ENV="production",
        SECRET_KEY="p" * 40,
        BROKER_URL="memory://",
        WTF_CSRF_ENABLED="0",
        PROXY_FIX_HOPS="0",
    )
    client = app.test_client()
    with app.app_context():
        from pulseboard.auth.passwords import hash_password
        from pulseboard.models import User

        db.session.add(
            User(
                email="p@example.com",
                display_name="P",
                password_hash=hash_password(PASSWORD),
                email_verified_at=utcnow(),
            )
        )
        db.session.commit()
    response = client.post(
        "/auth/login",
        data={"email": "p@example.com", "password": PASSWORD},
        base_url="https://localhost",
    )
    header = next(h for h in response.headers.getlist("Set-Cookie") if "session" in h)
    assert header.startswith("__Host-session=")
    assert "Secure" in header and "HttpOnly" in header and "Path=/" in header
    assert "Domain=" not in header


def test_signing_in_renews_the_session_id(app, client, auth, make_user):
    make_user()
    client.get("/auth/login")
    # Put something in the anonymous session so it has an id before signing in.
    with client.session_transaction() as session:
        session["planted"] = True
    before = session_cookie(client, app).value
    auth.login()
    after = session_cookie(client, app).value
    assert before != after
    assert len(stored_sessions(app)) == 1  # the anonymous one is gone


def test_an_idle_session_expires(app, client, auth, make_user):
    make_user()
    auth.login()
    assert client.get("/dashboard").status_code == 200
    with app.app_context():
        record = db.session.scalar(select(ServerSession))
        record.expiry = utcnow() - timedelta(seconds=1)
        db.session.commit()
        expired_id = record.session_id
    assert client.get("/dashboard").status_code == 302
    assert all(s.user_id is None and s.session_id != expired_id for s in stored_sessions(app))


def test_a_session_ends_at_its_absolute_lifetime_however_active(app, client, auth, make_user):
    make_user()
    auth.login()
    with app.app_context():
        record = db.session.scalar(select(ServerSession))
        record.created_at = utcnow() - app.config["SESSION_ABSOLUTE_LIFETIME"]
        db.session.commit()
    assert client.get("/dashboard").status_code == 302


def test_signing_out_deletes_the_server_side_session(app, client, auth, make_user):
    make_user()
    auth.login()
    token = auth.csrf_token("/settings/")
    [before] = [s.session_id for s in stored_sessions(app)]
    response = client.post("/auth/logout", data={"csrf_token": token})
    assert response.status_code == 302
    # What remains is at most a fresh anonymous session carrying the goodbye message.
    assert all(s.user_id is None and s.session_id != before for s in stored_sessions(app))
    assert client.get("/dashboard").status_code == 302


def test_signing_out_by_get_is_refused(app, client, auth, make_user):
    make_user()
    auth.login()
    assert client.get("/auth/logout").status_code == 405
    assert client.get("/dashboard").status_code == 200


def test_a_disabled_user_loses_their_session_on_the_next_request(app, client, auth, make_user):
    from pulseboard.models import User

    user_id = make_user()
    auth.login()
    with app.app_context():
        db.session.get(User, user_id).disabled = True
        db.session.commit()
    assert client.get("/dashboard").status_code == 302


def test_anonymous_pages_do_not_create_sessions(app, client):
    for path in ("/", "/docs", "/pricing", "/design-system", "/no-such-page"):
        client.get(path)
    assert stored_sessions(app) == []


def test_an_anonymous_visit_to_a_signed_in_page_stores_no_session(app, client):
    response = client.get("/dashboard")
    assert response.status_code == 302
    assert stored_sessions(app) == []
    assert "Sign in to see that page." in client.get(response.headers["Location"]).text
