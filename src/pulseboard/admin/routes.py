"""The admin overview."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from ..auth.session_control import set_disabled
from ..extensions import db
from ..models import Event, User
from ..settings.forms import ConfirmForm
from . import bp
from .access import admin_required
from .notices import NoticeForm


@bp.get("/")
@admin_required
def index():
    users = db.session.scalars(select(User).order_by(User.created_at.desc()).limit(200)).all()
    stats = {
        "users": db.session.scalar(select(func.count(User.id))),
        "admins": db.session.scalar(select(func.count(User.id)).where(User.is_admin)),
        "disabled": db.session.scalar(select(func.count(User.id)).where(User.disabled)),
        "events": db.session.scalar(select(func.count(Event.seq))),
    }
    return render_template("admin/index.html", users=users, stats=stats, notice_form=NoticeForm())


@bp.post("/users/<int:user_id>/disabled")
@admin_required
def set_user_disabled(user_id: int):
    if not ConfirmForm().validate_on_submit():
        abort(400)
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    if user.id == current_user.id:
        flash("You cannot disable your own account.", "danger")
        return redirect(url_for("admin.index"))
    disable = request.form.get("disabled") == "1"
    set_disabled(user, disable)
    flash(f"{user.display_name} is {'disabled' if disable else 'enabled again'}.", "success")
    return redirect(url_for("admin.index"))
