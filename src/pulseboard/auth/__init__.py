"""Signing in, signing up and signing out."""

from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/auth")

from . import oauth, routes  # noqa: E402,F401  (routes attach to bp)
