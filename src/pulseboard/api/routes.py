"""API index."""

from flask import current_app, jsonify

from . import bp


@bp.get("/")
def index():
    return jsonify(service=current_app.config["APP_SLUG"], api="v1")
