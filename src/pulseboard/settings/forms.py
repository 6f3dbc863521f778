"""Settings forms."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectChoice, StringField
from wtforms.validators import InputRequired, Length

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
