"""A user's own settings: profile and preferences."""

from flask import Blueprint

bp = Blueprint("settings", __name__, url_prefix="/settings")

from . import routes, security  # noqa: E402,F401  (routes attach to bp)
