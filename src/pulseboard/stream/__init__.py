"""Live streams: the live page (and, with Socket.IO, the /stream namespace)."""

from flask import Blueprint

bp = Blueprint("stream", __name__)

from . import routes  # noqa: E402,F401  (routes attach to bp)
