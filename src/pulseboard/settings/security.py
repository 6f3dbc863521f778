"""Settings that guard the account: email, password, sessions.

Changing the email or the password needs a fresh sign-in.  A new email takes
effect only when the link sent to it is opened, so nobody can move an account
to an address they do not control, and the page never says whether the new
address already has an account (mail leaves in the background, so not by its
timing either).
"""

from __future__ import annotations

from flask import current_app, flash, redirect, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from ..auth.email import send_address_taken_notice, send_mail
from ..auth.forms import normalize_email
from ..auth.fresh import fresh_login_required
from ..auth.links import CHANGE_EMAIL, LinkError, make_link_token, read_link
from ..auth.methods import can_remove
from ..auth.passwords import hash_password
from ..auth.session_control import end_sessions, mark_fresh
from ..database import utcnow
from ..extensions import db
from ..models import ServerSession, User
from ..stream.control import disconnect_sessions
from ..urls import external_url
from . import bp
from .forms import ConfirmForm, EmailForm, PasswordForm
from .routes import render_settings


def email_taken(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == normalize_email(email)))


@bp.post("/email")
@fresh_login_required
def change_email():
    form = EmailForm()
    if not form.validate_on_submit():
        return render_settings(400, email_form=form)
    new_email = normalize_email(form.email.data)
    owner = email_taken(new_email)
    if owner is None:
        token = make_link_token(current_user, CHANGE_EMAIL, email=new_email)
        link = external_url("settings.confirm_email", token=token)
        send_mail(new_email, "Confirm your new email", "verify", user=current_user, link=link)
    elif owner.id != current_user.id:
        send_address_taken_notice(owner, "Someone tried to use your address")
    flash(f"To finish, open the link we sent to {new_email}.", "info")
    return redirect(url_for("settings.index"))


@bp.get("/email/confirm/<token>")
def confirm_email(token: str):
    try:
        user, data = read_link(token, CHANGE_EMAIL)
    except LinkError as error:
        flash(str(error), "danger")
        return redirect(url_for("settings.index"))
    new_email = data.get("email", "")
    if email_taken(new_email) is not None:
        flash("That address now belongs to another account; it was not changed.", "danger")
        return redirect(url_for("settings.index"))
    user.email = new_email
    user.email_verified_at = utcnow()
    db.session.commit()
    flash(f"Your email is now {new_email}.", "success")
    return redirect(url_for("settings.index"))


@bp.post("/password")
@fresh_login_required
def change_password():
    """Change the password, or set one on an account that only had providers."""
    if not current_app.config["AUTH_PASSWORD_ENABLED"]:
        return redirect(url_for("settings.index"))
    form = PasswordForm(account=current_user)
    if not form.validate_on_submit():
        return render_settings(400, password_form=form)
    had_password = bool(current_user.password_hash)
    current_user.password_hash = hash_password(form.password.data)
    db.session.commit()
    # Whoever knew the old password is signed out everywhere else.
    end_sessions(current_user.id, keep_current=True)
    mark_fresh("password")
    flash("Password changed." if had_password else "Password set.", "success")
    return redirect(url_for("settings.index"))


@bp.post("/password/remove")
@fresh_login_required
def remove_password():
    if not ConfirmForm().validate_on_submit():
        return render_settings(400)
    if not can_remove(current_user, "password"):
        flash(
            "Link a sign-in provider first: without a password you would have no way in.", "danger"
        )
        return redirect(url_for("settings.index"))
    current_user.password_hash = None
    db.session.commit()
    flash("Password removed. Sign in with your linked provider from now on.", "success")
    return redirect(url_for("settings.index"))


@bp.post("/sessions/others/end")
@login_required
def end_other_sessions():
    if not ConfirmForm().validate_on_submit():
        return render_settings(400)
    count = end_sessions(current_user.id, keep_current=True)
    flash(f"Signed out of {count} other session{'s' if count != 1 else ''}.", "success")
    return redirect(url_for("settings.index"))


@bp.post("/sessions/<int:session_id>/end")
@login_required
def end_one_session(session_id: int):
    if not ConfirmForm().validate_on_submit():
        return render_settings(400)
    record = db.session.get(ServerSession, session_id)
    # Someone else's session id answers exactly like a missing one.
    if record is not None and record.user_id == current_user.id:
        db.session.delete(record)
        db.session.commit()
        disconnect_sessions([record.session_id])  # that device's live sockets end too
        flash("That session is signed out.", "success")
    return redirect(url_for("settings.index"))
