"""The admin overview."""

from __future__ import annotations

from functools import wraps

from flask import abort, render_template
from flask_login import current_user, login_required
from sqlalchemy import func, select

from ..extensions import db
from ..models import Event, User
from . import bp


def admin_required(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


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
    return render_template("admin/index.html", users=users, stats=stats)
