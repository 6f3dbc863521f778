"""Settings: profile and preferences (this module), security (security.py)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from ..auth.methods import can_remove
from ..auth.session_control import current_store_id, sessions_of
from ..extensions import db
from . import bp
from .forms import ConfirmForm, EmailForm, PasswordForm, PreferencesForm, ProfileForm


def render_settings(status: int = 200, **forms):
    """The settings page, with any submitted form (and its errors) in place of a blank one."""
    defaults = {
        "profile_form": lambda: ProfileForm(obj=current_user),
        "preferences_form": lambda: PreferencesForm(obj=current_user),
        "email_form": EmailForm,
        "password_form": PasswordForm,
        "confirm_form": ConfirmForm,
    }
    context = {name: forms.get(name) or make() for name, make in defaults.items()}
    return (
        render_template(
            "settings/index.html",
            sessions=sessions_of(current_user.id),
            current_session_id=current_store_id(),
            can_remove_password=can_remove(current_user, "password"),
            **context,
        ),
        status,
    )


@bp.get("/")
@login_required
def index():
    return render_settings()


@bp.post("/profile")
@login_required
def update_profile():
    form = ProfileForm()
    if not form.validate_on_submit():
        return render_settings(400, profile_form=form)
    current_user.display_name = form.display_name.data.strip()
    db.session.commit()
    flash("Profile saved.", "success")
    return redirect(url_for("settings.index"))


@bp.post("/preferences")
@login_required
def update_preferences():
    form = PreferencesForm()
    if not form.validate_on_submit():
        return render_settings(400, preferences_form=form)
    current_user.theme = form.theme.data
    current_user.welcome_enabled = form.welcome_enabled.data
    current_user.time_zone = form.time_zone.data
    db.session.commit()
    flash("Preferences saved.", "success")
    return redirect(url_for("settings.index"))
