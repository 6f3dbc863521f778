"""The live-stream page."""

from flask import render_template
from flask_login import login_required

from ..navigation import demo_page
from . import bp

DEFAULT_TOPICS = ("market.ticks", "system.metrics", "notices")


@bp.get("/live")
@login_required
@demo_page("live-stream")
def live():
    return render_template("stream/live.html", topics=DEFAULT_TOPICS)
