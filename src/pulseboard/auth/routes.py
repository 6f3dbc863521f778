"""Email and password: sign up, verify, sign in, reset, confirm, sign out.

No answer here tells a visitor whether an address has an account: unknown
addresses get the same message (and the same password-hashing delay) as known
ones, a sign-up with a taken address looks like any other sign-up while
the owner gets a note by mail, and mail leaves in the background so the answer
takes no longer for a known address.
"""

from __future__ import annotations

import logging

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from .. import metrics
from ..database import utcnow
from ..extensions import db, limiter
from ..models import User
from ..safe_redirect import local_target
from ..urls import external_url
from . import bp
from .email import send_address_taken_notice, send_mail
from .forms import (
    EmailOnlyForm,
    LoginForm,
    LogoutForm,
    ReauthenticateForm,
    RegisterForm,
    ResetPasswordForm,
    normalize_email,
)
from .links import RESET, VERIFY, LinkError, make_link_token, user_for_link
from .passwords import hash_password, needs_rehash, verify_password
from .session_control import end_current_session, end_sessions, mark_fresh, start_session

log = logging.getLogger(__name__)


def auth_rate_limit():
    return limiter.limit(lambda: current_app.config["AUTH_RATE_LIMIT"], methods=["POST"])


def account_sign_in_limit():
    """Failed sign-ins per account (the posted email), from whichever addresses they come.

    Only failures count, so the owner who types the password right is never slowed."""
    return limiter.limit(
        lambda: current_app.config["AUTH_ACCOUNT_RATE_LIMIT"],
        key_func=lambda: f"account:{normalize_email(request.form.get('email', ''))}",
        methods=["POST"],
        deduct_when=lambda response: g.get("sign_in_failed", False),
        error_message=(
            "Too many failed sign-ins for this account. Wait a few minutes and try again, "
            "or reset the password."
        ),
    )


def require_password_auth() -> None:
    if not current_app.config["AUTH_PASSWORD_ENABLED"]:
        abort(404)


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == normalize_email(email)))


def send_verification(user: User) -> None:
    link = external_url("auth.verify_email", token=make_link_token(user, VERIFY))
    send_mail(user.email, "Confirm your email", "verify", user=user, link=link)


def verification_pending(user: User) -> bool:
    return current_app.config["AUTH_EMAIL_VERIFICATION"] and user.email_verified_at is None


@bp.route("/login", methods=["GET", "POST"])
@auth_rate_limit()
@account_sign_in_limit()
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit() and current_app.config["AUTH_PASSWORD_ENABLED"]:
        user = find_user_by_email(form.email.data)
        password_ok = verify_password(user.password_hash if user else None, form.password.data)
        if user is None or not password_ok or user.disabled:
            # One message for every failure: it must not tell whether the email exists.
            log.info("password sign-in refused")
            g.sign_in_failed = True
            metrics.login("password", succeeded=False)
            flash("Wrong email or password.", "danger")
        elif verification_pending(user):
            send_verification(user)
            flash("Confirm your email address first: we have sent you a new link.", "warning")
        else:
            if needs_rehash(user.password_hash):
                user.password_hash = hash_password(form.password.data)
            start_session(user, "password")
            log.info("password sign-in: user %s", user.id)
            return redirect(local_target(form.next.data, "main.index"))
    return render_template("auth/login.html", form=form)


@bp.route("/register", methods=["GET", "POST"])
@auth_rate_limit()
def register():
    require_password_auth()
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = RegisterForm()
    if not form.validate_on_submit():
        return render_template("auth/register.html", form=form)
    existing = find_user_by_email(form.email.data)
    if existing is not None:
        hash_password(form.password.data)  # the same work as a real sign-up
        send_address_taken_notice(existing, "Someone tried to sign up with your address")
        return render_template("auth/check_email.html", email=normalize_email(form.email.data))
    user = User(
        email=normalize_email(form.email.data),
        display_name=form.display_name.data.strip(),
        password_hash=hash_password(form.password.data),
    )
    db.session.add(user)
    db.session.commit()
    if current_app.config["AUTH_EMAIL_VERIFICATION"]:
        send_verification(user)
        return render_template("auth/check_email.html", email=user.email)
    start_session(user, "password")
    flash(f"Welcome, {user.display_name}.", "success")
    return redirect(url_for("main.index"))


@bp.get("/verify/<token>")
@limiter.limit(lambda: current_app.config["AUTH_RATE_LIMIT"])
def verify_email(token: str):
    try:
        user = user_for_link(token, VERIFY)
    except LinkError as error:
        flash(str(error), "danger")
        return redirect(url_for("auth.resend_verification"))
    user.email_verified_at = utcnow()
    db.session.commit()
    flash("Your email address is confirmed. You can sign in now.", "success")
    return redirect(url_for("main.index" if current_user.is_authenticated else "auth.login"))


@bp.route("/verify", methods=["GET", "POST"])
@auth_rate_limit()
def resend_verification():
    form = EmailOnlyForm()
    if form.validate_on_submit():
        user = find_user_by_email(form.email.data)
        if user is not None and not user.disabled and user.email_verified_at is None:
            send_verification(user)
        return render_template("auth/check_email.html", email=normalize_email(form.email.data))
    return render_template("auth/resend.html", form=form)


@bp.route("/forgot", methods=["GET", "POST"])
@auth_rate_limit()
def forgot_password():
    require_password_auth()
    form = EmailOnlyForm()
    if form.validate_on_submit():
        user = find_user_by_email(form.email.data)
        if user is not None and not user.disabled:
            link = external_url("auth.reset_password", token=make_link_token(user, RESET))
            send_mail(user.email, "Reset your password", "reset", user=user, link=link)
        email = normalize_email(form.email.data)
        return render_template("auth/check_email.html", email=email, reset=True)
    return render_template("auth/forgot.html", form=form)


@bp.route("/reset/<token>", methods=["GET", "POST"])
@auth_rate_limit()
def reset_password(token: str):
    require_password_auth()
    try:
        user = user_for_link(token, RESET)
    except LinkError as error:
        flash(str(error), "danger")
        return redirect(url_for("auth.forgot_password"))
    form = ResetPasswordForm(account=user)
    if form.validate_on_submit():
        user.password_hash = hash_password(form.password.data)
        # Proving control of the mailbox also proves the address.
        user.email_verified_at = user.email_verified_at or utcnow()
        db.session.commit()
        end_sessions(user.id)  # whoever knew the old password is out
        flash("Your password is changed. Sign in with the new one.", "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset.html", form=form)


@bp.route("/confirm", methods=["GET", "POST"])
@login_required
@auth_rate_limit()
def reauthenticate():
    """Prove it is still you before a sensitive change (fresh login)."""
    form = ReauthenticateForm(next=request.args.get("next", ""))
    target = local_target(form.next.data, "settings.index")
    if form.validate_on_submit():
        if verify_password(current_user.password_hash, form.password.data):
            mark_fresh("password")
            return redirect(target)
        flash("That password is not right.", "danger")
    return render_template("auth/reauthenticate.html", form=form, next=target)


@bp.post("/logout")
@login_required
def logout():
    if not LogoutForm().validate_on_submit():
        abort(400)
    end_current_session()
    flash("You are signed out.", "info")
    return redirect(url_for("main.index"))
