"""Pages for administrators."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import notices, routes, system, tokens  # noqa: E402,F401  (routes attach to bp)
