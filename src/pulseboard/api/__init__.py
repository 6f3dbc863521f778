"""The JSON API under /api/v1 (token-authenticated, no CSRF; the event stream and the
history also take a browser session)."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import history, routes, sse  # noqa: E402,F401  (routes attach to bp)
