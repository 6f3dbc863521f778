"""Public and signed-in pages that are not about accounts or streams, plus the probes."""

from flask import Blueprint

bp = Blueprint("main", __name__)

from . import brand, health, routes, terms  # noqa: E402,F401  (routes attach to bp)
