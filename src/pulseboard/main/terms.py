"""The terms of use that people accept when they create an account."""

from flask import render_template

from . import bp


@bp.get("/terms")
def terms():
    return render_template("main/terms.html")
