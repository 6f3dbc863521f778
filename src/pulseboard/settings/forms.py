"""Settings forms."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, RadioField, SelectChoice, StringField
from wtforms.validators import Email, EqualTo, InputRequired, Length

from ..auth.passwords import MAX_LENGTH, MIN_LENGTH
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


class EmailForm(FlaskForm):
    email = EmailField("New email", validators=[InputRequired(), Email(), Length(max=254)])


class PasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[InputRequired(), Length(min=MIN_LENGTH, max=MAX_LENGTH)],
        description=f"At least {MIN_LENGTH} characters.",
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[InputRequired(), EqualTo("password", message="The passwords differ.")],
    )


class ConfirmForm(FlaskForm):
    """A bare POST (sign out elsewhere, remove password): only the CSRF token."""
