"""Operator commands."""

from sqlalchemy import select

from pulseboard.auth.passwords import verify_password
from pulseboard.extensions import db
from pulseboard.models import User


def test_users_create_reads_the_password_from_stdin(app, runner):
    result = runner.invoke(
        args=["users", "create", "Root@Example.com", "--admin", "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalar(select(User))
        assert user.email == "root@example.com"
        assert user.is_admin
        assert user.email_verified_at is not None
        assert verify_password(user.password_hash, "a long enough password")


def test_users_create_refuses_a_duplicate_and_a_short_password(app, runner, make_user):
    make_user(email="ada@example.com")
    duplicate = runner.invoke(
        args=["users", "create", "ada@example.com", "--password-stdin"], input="whatever12345\n"
    )
    assert duplicate.exit_code != 0
    assert "already exists" in duplicate.output
    short = runner.invoke(
        args=["users", "create", "b@example.com", "--password-stdin"], input="x\n"
    )
    assert short.exit_code != 0
    assert "at least" in short.output


def test_users_create_refuses_an_address_the_sign_in_form_would_refuse(app, runner, client):
    """Made here, such an account could never sign in."""
    for address in ("ops@pulseboard.test", "not-an-address", "ops@intranet.local"):
        result = runner.invoke(
            args=["users", "create", address, "--password-stdin"], input="a long enough password\n"
        )
        assert result.exit_code != 0 and "Invalid value for EMAIL" in result.output, result.output
    with app.app_context():
        assert db.session.scalar(select(User)) is None


def test_users_promote_and_revoke(app, runner, make_user):
    user_id = make_user(email="ada@example.com")
    assert runner.invoke(args=["users", "promote", "ada@example.com"]).exit_code == 0
    with app.app_context():
        assert db.session.get(User, user_id).is_admin
    assert runner.invoke(args=["users", "promote", "ada@example.com", "--revoke"]).exit_code == 0
    with app.app_context():
        assert not db.session.get(User, user_id).is_admin


def test_users_create_refuses_a_guessable_password(app, runner):
    result = runner.invoke(
        args=["users", "create", "c@example.com", "--password-stdin"], input="password123\n"
    )
    assert result.exit_code != 0
    assert "harder to guess" in result.output
