"""Account forms (CSRF-protected by Flask-WTF)."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import Email, EqualTo, InputRequired, Length, ValidationError

from .password_policy import account_words, password_problem
from .passwords import MAX_LENGTH, MIN_LENGTH


def normalize_email(email: str) -> str:
    """The one spelling of an address stored, looked up and shown back."""
    return email.strip().lower()


def email_field(label="Email"):
    return EmailField(label, validators=[InputRequired(), Email(), Length(max=254)])


def hard_to_guess(form, field) -> None:
    if field.errors:  # too short or too long already says what to fix
        return
    problem = password_problem(field.data, form.account_words())
    if problem:
        raise ValidationError(problem)


def new_password_fields(label="Password"):
    """For a form with an ``account_words()`` method (see NewPasswordForm)."""
    password = PasswordField(
        label,
        validators=[InputRequired(), Length(min=MIN_LENGTH, max=MAX_LENGTH), hard_to_guess],
        description=f"At least {MIN_LENGTH} characters, and not easy to guess.",
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[InputRequired(), EqualTo("password", message="The passwords differ.")],
    )
    return password, confirm


class NewPasswordForm(FlaskForm):
    """A form that sets the password of ``account`` (a User), checked against what is
    known about that person."""

    def __init__(self, *args, account=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.account = account

    def account_words(self) -> list[str]:
        if self.account is None:
            return []
        return account_words(self.account.email, self.account.display_name)


class LoginForm(FlaskForm):
    email = email_field()
    password = PasswordField("Password", validators=[InputRequired(), Length(max=MAX_LENGTH)])
    next = HiddenField()


class RegisterForm(FlaskForm):
    display_name = StringField("Name", validators=[InputRequired(), Length(min=1, max=100)])
    email = email_field()
    password, confirm = new_password_fields()
    accept = BooleanField("I accept the terms of use", validators=[InputRequired()])

    def account_words(self) -> list[str]:
        return account_words(self.email.data, self.display_name.data)


class EmailOnlyForm(FlaskForm):
    """Forgot password, resend verification: only an address."""

    email = email_field()


class ResetPasswordForm(NewPasswordForm):
    password, confirm = new_password_fields()


class ReauthenticateForm(FlaskForm):
    password = PasswordField(
        "Current password", validators=[InputRequired(), Length(max=MAX_LENGTH)]
    )
    next = HiddenField()


class LogoutForm(FlaskForm):
    pass
