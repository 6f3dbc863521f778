"""Fresh login: sensitive changes need a sign-in from the last few minutes."""

from __future__ import annotations

import time
from functools import wraps

from flask import current_app, redirect, request, session, url_for
from flask_login import login_required

from .session_control import AUTH_AT


def is_fresh() -> bool:
    window = current_app.config["AUTH_FRESH_MINUTES"] * 60
    return time.time() - session.get(AUTH_AT, 0) <= window


def fresh_login_required(view):
    """Send the user to confirm who they are (password or provider) before ``view``."""

    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not is_fresh():
            target = request.full_path if request.method == "GET" else request.referrer
            return redirect(
                url_for("auth.reauthenticate", next=target or url_for("settings.index"))
            )
        return view(*args, **kwargs)

    return wrapper
