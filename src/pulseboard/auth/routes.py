"""Email and password sign-in, sign-up and sign-out."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user
from sqlalchemy import func, select

from ..extensions import db
from ..models import User
from ..safe_redirect import local_target
from . import bp
from .forms import LoginForm, LogoutForm, RegisterForm
from .passwords import hash_password, needs_rehash, verify_password
from .session_control import start_session


def password_auth_enabled() -> None:
    if not current_app.config["AUTH_PASSWORD_ENABLED"]:
        abort(404)


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == email.lower()))


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit() and current_app.config["AUTH_PASSWORD_ENABLED"]:
        user = find_user_by_email(form.email.data)
        password_ok = verify_password(user.password_hash if user else None, form.password.data)
        if user is None or not password_ok or user.disabled:
            # One message for every failure: it must not tell whether the email exists.
            flash("Wrong email or password.", "danger")
        else:
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(form.password.data)
            start_session(user, "password")
            return redirect(local_target(form.next.data, "main.index"))
    return render_template("auth/login.html", form=form)


@bp.route("/register", methods=["GET", "POST"])
def register():
    password_auth_enabled()
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = RegisterForm()
    if form.validate_on_submit():
        if find_user_by_email(form.email.data) is not None:
            form.email.errors.append("That email cannot be used. Sign in instead?")
        else:
            user = User(
                email=form.email.data.strip().lower(),
                display_name=form.display_name.data.strip(),
                password_hash=hash_password(form.password.data),
            )
            db.session.add(user)
            db.session.commit()
            start_session(user, "password")
            flash(f"Welcome, {user.display_name}.", "success")
            return redirect(url_for("main.index"))
    return render_template("auth/register.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    if not LogoutForm().validate_on_submit():
        abort(400)
    logout_user()
    # Delete the stored session and take a new id for whatever the browser keeps
    # (the goodbye message); regenerate() skips an empty session, so clear after.
    current_app.session_interface.regenerate(session)
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("main.index"))
