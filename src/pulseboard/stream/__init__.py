"""Live streams: the /stream Socket.IO namespace, its delivery, and the live page."""

from flask import Blueprint

bp = Blueprint("stream", __name__)

from . import routes  # noqa: E402,F401  (routes attach to bp)
