"""Admin notices: to everyone, to a topic's subscribers, or to one user.

A notice is an ordinary event (type ``notice``) published on the bus, so it
is kept in the event log, reaches every instance, and shows as a toast to the
connected users it targets.  Admins send one from the admin page or over the
``/admin`` Socket.IO namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, flash, redirect, request, url_for
from flask_login import current_user
from flask_socketio import (  # its ConnectionRefusedError: the message reaches the client
    ConnectionRefusedError,
    Namespace,
    join_room,
)
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import RadioField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from ..auth.session_control import current_store_id
from ..events.envelope import TOPIC, InvalidEnvelope
from ..events.producer import PublishError, shared_producer
from ..extensions import db
from ..models import User
from ..stream.access import user_topic
from ..stream.names import ADMIN_NAMESPACE, NOTICE, session_room, user_room
from ..stream.notice_levels import NOTICE_LEVELS
from ..stream.rights import live_rights, still_holds, sweeper
from ..stream.state import SocketOwner, registry
from . import bp
from .access import admin_required

LEVELS = tuple(NOTICE_LEVELS)
NOTICES_TOPIC = "notices"


class NoticeError(ValueError):
    pass


@dataclass(frozen=True)
class Notice:
    level: str
    title: str
    body: str
    target: str  # "all", "topic" or "user"
    to: str = ""  # the topic, or the user's email or id

    def topic(self) -> str:
        if self.target == "all":
            return NOTICES_TOPIC
        if self.target == "topic":
            if not TOPIC.match(self.to):
                raise NoticeError(f"{self.to!r} is not a topic like market.ticks")
            return self.to
        if self.target == "user":
            user = find_user(self.to)
            if user is None:
                raise NoticeError(f"no user {self.to!r}")
            return user_topic(user.id)
        raise NoticeError("target must be all, topic or user")


def find_user(reference: str) -> User | None:
    reference = reference.strip()
    if reference.isdigit():
        return db.session.get(User, int(reference))
    return db.session.scalar(select(User).where(func.lower(User.email) == reference.lower()))


def publish_notice(notice: Notice) -> str:
    if notice.level not in LEVELS:
        raise NoticeError(f"level must be one of {', '.join(LEVELS)}")
    if not notice.title.strip() or len(notice.title) > 120 or len(notice.body) > 2000:
        raise NoticeError("a notice needs a title (up to 120 characters) and a body up to 2000")
    producer = shared_producer(current_app._get_current_object())
    payload = {"level": notice.level, "title": notice.title.strip(), "body": notice.body.strip()}
    try:
        return producer.publish(notice.topic(), NOTICE, payload)
    except (InvalidEnvelope, PublishError) as error:
        raise NoticeError(str(error)) from error


class NoticeForm(FlaskForm):
    level = SelectField(
        "Level",
        choices=[SelectChoice(level, shown["label"]) for level, shown in NOTICE_LEVELS.items()],
    )
    title = StringField("Title", validators=[InputRequired(), Length(max=120)])
    body = TextAreaField("Message", validators=[Optional(), Length(max=2000)])
    target = RadioField(
        "Send to",
        choices=[
            SelectChoice("all", "Everyone"),
            SelectChoice("topic", "A topic"),
            SelectChoice("user", "One user"),
        ],
        default="all",
    )
    to = StringField("Topic or user (email or id)", validators=[Optional(), Length(max=254)])


@bp.post("/notices")
@admin_required
def send_notice():
    form = NoticeForm()
    if not form.validate_on_submit():
        flash("The notice needs a title and a level.", "danger")
        return redirect(url_for("admin.index"))
    notice = Notice(
        form.level.data,
        form.title.data,
        form.body.data or "",
        form.target.data,
        (form.to.data or "").strip(),
    )
    try:
        publish_notice(notice)
    except NoticeError as error:
        flash(f"Notice not sent: {error}", "danger")
    else:
        flash("Notice sent.", "success")
    return redirect(url_for("admin.index"))


class AdminNamespace(Namespace):
    """``/admin``: the same broadcast for admin tools that speak Socket.IO.

    Bound to its session like ``/stream``: a request for its connection without
    that session's cookie is refused, and ending the session, disabling or
    demoting the admin disconnects it.  Rights are asked of the database again
    before every broadcast, so a disconnect that was lost changes nothing.
    """

    def on_connect(self, auth=None):
        if not (current_user.is_authenticated and current_user.is_admin):
            raise ConnectionRefusedError("admins only")
        eio_sid = self.socketio.server.manager.eio_sid_from_sid(request.sid, ADMIN_NAMESPACE)
        owner = SocketOwner(current_user.id, current_store_id(), is_admin=True, eio_sid=eio_sid)
        registry.admin_sockets[request.sid] = owner
        registry.bind(eio_sid, owner.session_key)
        join_room(user_room(owner.user_id))
        join_room(session_room(owner.session_key))
        sweeper.ensure_running(self.socketio, current_app._get_current_object())

    def on_disconnect(self, reason=None):
        owner = registry.admin_sockets.pop(request.sid, None)
        if owner is not None:
            registry.release(owner.eio_sid)

    def on_broadcast(self, data=None):
        owner = registry.admin_sockets.get(request.sid)
        if owner is None or not still_holds(owner, live_rights([owner.session_key])):
            # After the answer, so the client learns why before the socket closes.
            self.socketio.start_background_task(
                self.socketio.server.disconnect, request.sid, namespace=ADMIN_NAMESPACE
            )
            return {"ok": False, "error": "admins only"}
        if not isinstance(data, dict):
            return {"ok": False, "error": "broadcast takes {level, title, body, target, to}"}
        try:
            notice = Notice(
                level=str(data.get("level", "info")),
                title=str(data.get("title", "")),
                body=str(data.get("body", "")),
                target=str(data.get("target", "all")),
                to=str(data.get("to", "")),
            )
            return {"ok": True, "id": publish_notice(notice)}
        except NoticeError as error:
            return {"ok": False, "error": str(error)}


def register(socketio) -> None:
    socketio.on_namespace(AdminNamespace(ADMIN_NAMESPACE))
