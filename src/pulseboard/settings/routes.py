"""Settings pages."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from ..extensions import db
from . import bp
from .forms import PreferencesForm, ProfileForm


@bp.get("/")
@login_required
def index():
    return render_template(
        "settings/index.html",
        profile_form=ProfileForm(obj=current_user),
        preferences_form=PreferencesForm(obj=current_user),
    )


@bp.post("/profile")
@login_required
def update_profile():
    form = ProfileForm()
    if form.validate_on_submit():
        current_user.display_name = form.display_name.data.strip()
        db.session.commit()
        flash("Profile saved.", "success")
        return redirect(url_for("settings.index"))
    return (
        render_template(
            "settings/index.html",
            profile_form=form,
            preferences_form=PreferencesForm(obj=current_user),
        ),
        400,
    )


@bp.post("/preferences")
@login_required
def update_preferences():
    form = PreferencesForm()
    if form.validate_on_submit():
        current_user.theme = form.theme.data
        current_user.welcome_enabled = form.welcome_enabled.data
        db.session.commit()
        flash("Preferences saved.", "success")
        return redirect(url_for("settings.index"))
    return (
        render_template(
            "settings/index.html",
            profile_form=ProfileForm(obj=current_user),
            preferences_form=form,
        ),
        400,
    )
