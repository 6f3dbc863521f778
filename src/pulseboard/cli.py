"""Operator commands: ``flask --app pulseboard users …``."""

from __future__ import annotations

import sys

import click
from email_validator import EmailNotValidError, validate_email
from flask.cli import AppGroup
from sqlalchemy import select

from .auth.password_policy import account_words, password_problem
from .auth.passwords import MIN_LENGTH, hash_password
from .database import utcnow
from .extensions import db
from .models import User

users_cli = AppGroup("users", help="Create and manage user accounts.")


def _user_by_email(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


@users_cli.command("create")
@click.argument("email")
@click.option("--name", "display_name", help="Display name (default: the part before @).")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(email: str, display_name: str | None, admin: bool, password_stdin: bool) -> None:
    """Create a verified user, prompting for a password unless --password-stdin."""
    email = email.strip().lower()
    try:
        # The sign-in form's own check (WTForms' Email): an address it refuses could
        # never sign in, such as one on a reserved name like .test or .local.
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise click.BadParameter(str(error), param_hint="EMAIL") from None
    if db.session.scalar(select(User).where(User.email == email)) is not None:
        raise click.ClickException(f"a user with email {email} already exists")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_LENGTH:
        raise click.ClickException(f"the password needs at least {MIN_LENGTH} characters")
    problem = password_problem(password, account_words(email, display_name))
    if problem is not None:
        raise click.ClickException(problem)
    user = User(
        email=email,
        display_name=display_name or email.split("@")[0],
        password_hash=hash_password(password),
        email_verified_at=utcnow(),
        is_admin=admin,
    )
    db.session.add(user)
    db.session.commit()
    click.echo(f"created user {user.id} <{email}>{' (admin)' if admin else ''}")


@users_cli.command("promote")
@click.argument("email")
@click.option("--revoke", is_flag=True, help="Take the admin role away instead.")
def promote_user(email: str, revoke: bool) -> None:
    """Give (or with --revoke take away) the admin role."""
    user = _user_by_email(email)
    user.is_admin = not revoke
    db.session.commit()
    if revoke:
        from .stream.control import disconnect_user

        # Rights are granted at connect: the user's sockets come back with the new ones.
        disconnect_user(user.id)
    click.echo(f"{email} is {'no longer' if revoke else 'now'} an admin")


@users_cli.command("disable")
@click.argument("email")
@click.option("--enable", is_flag=True, help="Enable the account again instead.")
def disable_user(email: str, enable: bool) -> None:
    """Disable an account (ending its sessions), or with --enable restore it."""
    from .auth.session_control import set_disabled

    user = _user_by_email(email)
    set_disabled(user, not enable)
    click.echo(f"{email} is {'enabled' if enable else 'disabled; its sessions are ended'}")
