"""The JSON API under /api/v1 (token-authenticated; no session, no CSRF)."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import routes  # noqa: E402,F401  (routes attach to bp)
