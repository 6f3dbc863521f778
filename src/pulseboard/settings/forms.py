"""Settings forms."""

from functools import cache
from zoneinfo import available_timezones

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, RadioField, SelectChoice, SelectField, StringField
from wtforms.validators import Email, InputRequired, Length

from ..auth.forms import NewPasswordForm, new_password_fields
from ..config import THEMES


class ProfileForm(FlaskForm):
    display_name = StringField("Display name", validators=[InputRequired(), Length(max=100)])


class PreferencesForm(FlaskForm):
    theme = RadioField(
        "Theme",
        choices=[
            SelectChoice(t, "Match my system" if t == "auto" else t.capitalize()) for t in THEMES
        ],
    )
    welcome_enabled = BooleanField("Show the welcome page when I sign in")
    time_zone = SelectField(
        "Time zone",
        choices=lambda: time_zone_choices(),
        description="Every time on every page is shown in it; hover a time for UTC.",
    )


@cache
def time_zone_choices() -> list[SelectChoice]:
    zones = sorted(zone for zone in available_timezones() if "/" in zone or zone == "UTC")
    return [SelectChoice("", "My browser's time zone"), *(SelectChoice(z, z) for z in zones)]


class EmailForm(FlaskForm):
    email = EmailField("New email", validators=[InputRequired(), Email(), Length(max=254)])


class PasswordForm(NewPasswordForm):
    password, confirm = new_password_fields("New password")


class ConfirmForm(FlaskForm):
    """A bare POST (sign out elsewhere, remove password): only the CSRF token."""
