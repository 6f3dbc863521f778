"""API tokens from the admin page: create (shown once), list, revoke.

The same tokens as ``pulseboard tokens``: a producer token publishes through
the ingest API, a read token streams its topics (Server-Sent Events, or the
``/stream`` namespace with ``auth: {token}``) for kiosks and scripts.
"""

from __future__ import annotations

import re

from flask import abort, flash, make_response, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import RadioField, StringField
from wtforms.validators import InputRequired, Length

from ..api.tokens import PRODUCE, READ, TokenError, issue_token, revoke
from ..extensions import db
from ..models import ApiToken
from ..settings.forms import ConfirmForm
from . import bp
from .access import admin_required

SHOWN = 200  # newest tokens listed


class TokenForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=100)])
    scope = RadioField(
        "May",
        choices=[(READ, "Read its topics (kiosks, scripts)"), (PRODUCE, "Publish to its topics")],
        default=READ,
    )
    topics = StringField(
        "Topic patterns",
        validators=[InputRequired(), Length(max=1000)],
        description="Separated by commas or spaces; * matches any part, e.g. market.*",
    )


def listing(form: TokenForm, created: tuple[ApiToken, str] | None = None):
    tokens = db.session.scalars(
        select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc()).limit(SHOWN)
    ).all()
    response = make_response(
        render_template("admin/tokens.html", form=form, tokens=tokens, created=created)
    )
    # The page may hold a token in clear: no cache keeps it.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/tokens")
@admin_required
def tokens():
    return listing(TokenForm())


@bp.post("/tokens")
@admin_required
def create_token():
    form = TokenForm()
    if not form.validate_on_submit():
        return listing(form), 400
    patterns = [p for p in re.split(r"[\s,]+", form.topics.data) if p]
    try:
        record, clear = issue_token(
            db.session,
            form.name.data,
            patterns,
            created_by_id=current_user.id,
            scope=form.scope.data,
        )
    except TokenError as error:
        form.topics.errors = [str(error)]
        return listing(form), 400
    # Shown on this response only (never through the session's flash store).
    return listing(TokenForm(formdata=None), created=(record, clear)), 201


@bp.post("/tokens/<int:token_id>/revoke")
@admin_required
def revoke_token(token_id: int):
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        record = revoke(db.session, token_id)
    except TokenError:
        abort(404)
    flash(f"Token {record.name} ({record.prefix}…) is revoked; its streams are closed.", "success")
    return redirect(url_for("admin.tokens"))
