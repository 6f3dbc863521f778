"""Dashboards users build: widgets bound to topics, filled from the log, then live."""

from flask import Blueprint

bp = Blueprint("dashboards", __name__, url_prefix="/dashboards")

from . import routes  # noqa: E402,F401  (routes attach to bp)
