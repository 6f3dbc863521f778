"""Account forms (CSRF-protected by Flask-WTF)."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import Email, EqualTo, InputRequired, Length

from .passwords import MAX_LENGTH, MIN_LENGTH


def email_field(label="Email"):
    return EmailField(label, validators=[InputRequired(), Email(), Length(max=254)])


def new_password_fields(label="Password"):
    password = PasswordField(
        label,
        validators=[InputRequired(), Length(min=MIN_LENGTH, max=MAX_LENGTH)],
        description=f"At least {MIN_LENGTH} characters.",
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[InputRequired(), EqualTo("password", message="The passwords differ.")],
    )
    return password, confirm


class LoginForm(FlaskForm):
    email = email_field()
    password = PasswordField("Password", validators=[InputRequired(), Length(max=MAX_LENGTH)])
    next = HiddenField()


class RegisterForm(FlaskForm):
    display_name = StringField("Name", validators=[InputRequired(), Length(min=1, max=100)])
    email = email_field()
    password, confirm = new_password_fields()
    accept = BooleanField("I accept the terms of use", validators=[InputRequired()])


class EmailOnlyForm(FlaskForm):
    """Forgot password, resend verification: only an address."""

    email = email_field()


class ResetPasswordForm(FlaskForm):
    password, confirm = new_password_fields()


class ReauthenticateForm(FlaskForm):
    password = PasswordField(
        "Current password", validators=[InputRequired(), Length(max=MAX_LENGTH)]
    )
    next = HiddenField()


class LogoutForm(FlaskForm):
    pass
