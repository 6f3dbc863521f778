"""The live-stream page and the notices list."""

from flask import current_app, render_template
from flask_login import current_user, login_required
from sqlalchemy import select

from ..events.store import readable
from ..extensions import db
from ..models import Event
from ..navigation import demo_page
from . import bp
from .access import user_topic
from .names import NOTICE

NOTICES_SHOWN = 50

DEFAULT_TOPICS = ("market.ticks", "system.metrics", "notices")


@bp.get("/live")
@login_required
@demo_page("live-stream")
def live():
    return render_template("stream/live.html", topics=DEFAULT_TOPICS)


@bp.get("/notices")
@login_required
def notices():
    """Notices sent to everyone, to this user, or to a public topic, newest first."""
    topics = ["notices", user_topic(current_user.id), *current_app.config["STREAM_PUBLIC_TOPICS"]]
    rows = db.session.scalars(
        select(Event)
        .where(Event.type == NOTICE, Event.topic.in_(topics))
        .order_by(Event.seq.desc())
        .limit(NOTICES_SHOWN)
    ).all()
    items = [event.as_dict() for event in readable(rows)]
    return render_template("stream/notices.html", notices=items)
