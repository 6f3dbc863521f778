"""Dashboards: list, create, view, edit (settings and widgets), share, delete.

An owner edits; when shared, every signed-in user may view it read-only.  A
widget's topic must be one its owner may read when it is added, and a viewer's
page asks for history and the live stream with the viewer's own rights, so a
shared dashboard never shows anyone a topic they may not read.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, SelectChoice, SelectField, StringField
from wtforms.validators import InputRequired, Length

from ..extensions import db
from ..models import Event
from ..stream.access import may_subscribe, user_topic
from . import bp
from .models import Dashboard
from .widgets import (
    KINDS,
    MAX_WIDGETS,
    MODES,
    RANGES,
    WINDOWS,
    InvalidWidget,
    Widget,
    from_dict,
    split_list,
    starter_widgets,
    validate,
)

MAX_DASHBOARDS = 50
KNOWN_TOPICS = 500  # topics from the log offered in the editor
STARTER_NAME = "Markets and host"


def choices(labels: dict) -> list[SelectChoice]:
    return [SelectChoice(str(value), label) for value, label in labels.items()]


class DashboardForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=100)])
    shared = BooleanField("Share read-only with every signed-in user")


class WidgetForm(FlaskForm):
    kind = SelectField("Kind", choices=choices(KINDS))
    title = StringField("Title", validators=[InputRequired(), Length(max=80)])
    topic = StringField("Topic", validators=[InputRequired(), Length(max=200)])
    path = StringField(
        "Value path",
        validators=[Length(max=300)],
        description="The payload field to show, dotted: price, load.0",
    )
    unit = StringField("Unit", validators=[Length(max=16)], description="e.g. %, USD, ms")
    types = StringField("Only types", validators=[Length(max=1400)], description="Optional")
    keys = StringField("Only keys", validators=[Length(max=1400)], description="Optional")
    mode = SelectField("Number shows", choices=choices(MODES))
    window = SelectField("Over", choices=choices(WINDOWS), default="300")
    range = SelectField("Chart range", choices=choices(RANGES), default="900")

    def widget(self) -> Widget:
        return Widget(
            kind=self.kind.data,
            title=self.title.data,
            topic=(self.topic.data or "").strip(),
            path=self.path.data,
            unit=self.unit.data,
            types=split_list(self.types.data),
            keys=split_list(self.keys.data),
            mode=self.mode.data,
            window=int(self.window.data),
            range=int(self.range.data),
        )


def readable_topics() -> list[str]:
    """Topics to offer: the user's own, the configured ones without wildcards, and those
    in the log, each only if the user may read it."""
    config = current_app.config
    candidates = ["notices", user_topic(current_user.id)]
    candidates += [t for t in config["STREAM_PUBLIC_TOPICS"] if "*" not in t and "?" not in t]
    if current_user.is_admin:
        candidates += [t for t in config["STREAM_ADMIN_TOPICS"] if "*" not in t and "?" not in t]
    # One step per topic on the (topic, seq) index: cheap on a log of any length.
    candidates += db.session.scalars(select(Event.topic).distinct().limit(KNOWN_TOPICS)).all()
    user_id, is_admin = current_user.id, current_user.is_admin
    return sorted({t for t in candidates if may_subscribe(t, user_id, is_admin, config)})


def topic_label(topic: str) -> str:
    return "My notifications" if topic == user_topic(current_user.id) else topic


def owned(dashboard_id: int) -> Dashboard:
    dashboard = db.session.get(Dashboard, dashboard_id)
    if dashboard is None or dashboard.owner_id != current_user.id:
        abort(404)
    return dashboard


def viewable(dashboard_id: int) -> Dashboard:
    dashboard = db.session.get(Dashboard, dashboard_id)
    if dashboard is None or not (dashboard.shared or dashboard.owner_id == current_user.id):
        abort(404)
    return dashboard


def first_dashboard() -> Dashboard:
    """The user's first dashboard; a new user gets the starter one, seeded."""
    dashboard = db.session.scalars(
        select(Dashboard).where(Dashboard.owner_id == current_user.id).order_by(Dashboard.id)
    ).first()
    if dashboard is None:
        dashboard = Dashboard(owner_id=current_user.id, name=STARTER_NAME)
        dashboard.widgets = starter_widgets()
        db.session.add(dashboard)
        db.session.commit()
    return dashboard


def render_dashboard(dashboard: Dashboard):
    may_read = {
        widget["topic"]: may_subscribe(
            widget["topic"], current_user.id, current_user.is_admin, current_app.config
        )
        for widget in dashboard.widgets
    }
    return render_template(
        "dashboards/view.html",
        dashboard=dashboard,
        widgets=dashboard.widgets,
        may_read=may_read,
        mine=dashboard.owner_id == current_user.id,
        topic_label=topic_label,
    )


@bp.get("/")
@login_required
def index():
    first_dashboard()
    mine = db.session.scalars(
        select(Dashboard).where(Dashboard.owner_id == current_user.id).order_by(Dashboard.name)
    ).all()
    shared = db.session.scalars(
        select(Dashboard)
        .where(Dashboard.shared.is_(True), Dashboard.owner_id != current_user.id)
        .order_by(Dashboard.name)
    ).all()
    return render_template(
        "dashboards/index.html", mine=mine, shared=shared, form=DashboardForm(formdata=None)
    )


@bp.post("/")
@login_required
def create():
    form = DashboardForm()
    if not form.validate_on_submit():
        flash("A dashboard needs a name of up to 100 characters.", "danger")
        return redirect(url_for(".index"))
    count = db.session.scalar(
        select(db.func.count()).select_from(Dashboard).where(Dashboard.owner_id == current_user.id)
    )
    if count >= MAX_DASHBOARDS:
        flash(f"You have {MAX_DASHBOARDS} dashboards, the most one account may keep.", "danger")
        return redirect(url_for(".index"))
    dashboard = Dashboard(owner_id=current_user.id, name=form.name.data.strip(), shared=False)
    dashboard.widgets = []
    db.session.add(dashboard)
    db.session.commit()
    return redirect(url_for(".edit", dashboard_id=dashboard.id))


@bp.get("/<int:dashboard_id>")
@login_required
def view(dashboard_id: int):
    return render_dashboard(viewable(dashboard_id))


def render_editor(dashboard: Dashboard, widget_form: WidgetForm | None = None, status=200):
    settings = DashboardForm(formdata=None, name=dashboard.name, shared=dashboard.shared)
    return (
        render_template(
            "dashboards/edit.html",
            dashboard=dashboard,
            widgets=dashboard.widgets,
            settings=settings,
            form=widget_form or WidgetForm(formdata=None),
            topics=readable_topics(),
            topic_label=topic_label,
            kinds=KINDS,
            max_widgets=MAX_WIDGETS,
        ),
        status,
    )


@bp.get("/<int:dashboard_id>/edit")
@login_required
def edit(dashboard_id: int):
    return render_editor(owned(dashboard_id))


@bp.post("/<int:dashboard_id>/settings")
@login_required
def settings(dashboard_id: int):
    dashboard = owned(dashboard_id)
    form = DashboardForm()
    if not form.validate_on_submit():
        flash("A dashboard needs a name of up to 100 characters.", "danger")
        return redirect(url_for(".edit", dashboard_id=dashboard.id))
    dashboard.name = form.name.data.strip()
    dashboard.shared = form.shared.data
    db.session.commit()
    flash("Dashboard saved.", "success")
    return redirect(url_for(".edit", dashboard_id=dashboard.id))


@bp.post("/<int:dashboard_id>/widgets")
@login_required
def add_widget(dashboard_id: int):
    dashboard = owned(dashboard_id)
    form = WidgetForm()
    widgets = dashboard.widgets
    if len(widgets) >= MAX_WIDGETS:
        flash(f"A dashboard holds at most {MAX_WIDGETS} widgets.", "danger")
        return render_editor(dashboard, form, 400)
    if not form.validate_on_submit():
        return render_editor(dashboard, form, 400)
    try:
        widget = validate(form.widget())
    except InvalidWidget as error:
        form.form_errors.append(str(error))
        return render_editor(dashboard, form, 400)
    config = current_app.config
    if not may_subscribe(widget.topic, current_user.id, current_user.is_admin, config):
        form.topic.errors = [f"You may not read {widget.topic}."]
        return render_editor(dashboard, form, 400)
    dashboard.widgets = [*widgets, widget.as_dict()]
    db.session.commit()
    flash(f"Widget “{widget.title}” added.", "success")
    return redirect(url_for(".edit", dashboard_id=dashboard.id))


@bp.post("/<int:dashboard_id>/widgets/<widget_id>/<any(up, down, delete):action>")
@login_required
def change_widget(dashboard_id: int, widget_id: str, action: str):
    dashboard = owned(dashboard_id)
    widgets = [from_dict(w).as_dict() for w in dashboard.widgets]
    positions = [i for i, w in enumerate(widgets) if w["id"] == widget_id]
    if not positions:
        abort(404)
    i = positions[0]
    if action == "delete":
        del widgets[i]
    else:
        j = i - 1 if action == "up" else i + 1
        if 0 <= j < len(widgets):
            widgets[i], widgets[j] = widgets[j], widgets[i]
    dashboard.widgets = widgets
    db.session.commit()
    return redirect(url_for(".edit", dashboard_id=dashboard.id) + "#widgets")


@bp.post("/<int:dashboard_id>/delete")
@login_required
def delete(dashboard_id: int):
    dashboard = owned(dashboard_id)
    name = dashboard.name
    db.session.delete(dashboard)
    db.session.commit()
    flash(f"Dashboard “{name}” deleted.", "success")
    return redirect(url_for(".index"))
