"""Settings forms."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, StringField
from wtforms.validators import InputRequired, Length

from ..config import THEMES


class ProfileForm(FlaskForm):
    display_name = StringField("Display name", validators=[InputRequired(), Length(max=100)])


class PreferencesForm(FlaskForm):
    theme = RadioField(
        "Theme",
        choices=[(t, t.capitalize() if t != "auto" else "Match my system") for t in THEMES],
    )
    welcome_enabled = BooleanField("Show the welcome page when I sign in")
