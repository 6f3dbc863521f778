"""The System page: broker, database, queues, event flow, sockets and dead letters.

Every figure says where it comes from, and a part that cannot be read (the
broker is down, the consumer's metrics port is off) says so instead of
failing the page.  Dead letters can be requeued or discarded one at a time.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import func, select

from ..database import utcnow
from ..events import dead_letters
from ..events.service import is_embedded
from ..events.topology import Topology
from ..extensions import db
from ..main.health import readiness
from ..metrics import read
from ..models import Event
from ..settings.forms import ConfirmForm
from . import bp
from .access import admin_required

log = logging.getLogger(__name__)

FLOW_WINDOW = timedelta(minutes=1)
_FINGERPRINT = re.compile(r"^[0-9a-f]{32}\Z")
# Counter readings at the previous view of this page, per process: two readings
# make a rate without keeping history anywhere.
_previous: dict[str, tuple[float, float]] = {}


@dataclass(frozen=True)
class Flow:
    stored_per_second: float
    latest_seq: int | None
    latest_lag: float | None  # seconds from the newest event's timestamp to its storing
    latest_stored_at: object | None


@bp.get("/system")
@admin_required
def system():
    app = current_app._get_current_object()
    config = app.config
    topology = Topology.from_config(config)
    timeout = config["BROKER_CHECK_TIMEOUT"]
    letters, letters_error = [], None
    try:
        letters = dead_letters.peek(config["BROKER_URL"], topology, timeout)
    except Exception as error:  # shown on the page; the broker may well be down
        letters_error = f"{type(error).__name__}: {error}"[:300]
    web = read.local_samples()
    return render_template(
        "admin/system.html",
        embedded=is_embedded(app),
        checks=readiness(app),
        queues=dead_letters.queue_status(config["BROKER_URL"], topology, timeout),
        letters=letters,
        letters_error=letters_error,
        flow=event_flow(),
        consumer=consumer_figures(app, web),
        sockets_by_transport=read.by_label(web, "pulseboard_sockets_connected", "transport"),
        instance_sockets=read.by_label(
            web, "pulseboard_instance_sockets_connected", "web_instance"
        ),
        instance_users=read.by_label(web, "pulseboard_instance_users_connected", "web_instance"),
        shared_metrics=bool(config["PROMETHEUS_MULTIPROC_DIR"]),
    )


@bp.post("/system/dead-letters/<fingerprint>/<action>")
@admin_required
def act_on_dead_letter(fingerprint: str, action: str):
    if action not in ("requeue", "discard") or not _FINGERPRINT.match(fingerprint):
        abort(404)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    config = current_app.config
    act = dead_letters.requeue if action == "requeue" else dead_letters.discard
    try:
        letter = act(
            config["BROKER_URL"],
            Topology.from_config(config),
            fingerprint,
            config["BROKER_CHECK_TIMEOUT"],
        )
    except dead_letters.DeadLetterNotFound:
        flash("That dead letter is no longer in the queue.", "warning")
    except Exception as error:
        log.exception("dead letter %s failed: %s", action, fingerprint)
        flash(f"Could not {action} the dead letter: {type(error).__name__}: {error}", "danger")
    else:
        log.info(
            "dead letter %s by admin %s: %s (%s)",
            "requeued" if action == "requeue" else "discarded",
            current_user.id,
            letter.message_id or fingerprint,
            letter.reason,
        )
        done = "sent to the consumer again" if action == "requeue" else "discarded"
        flash(f"Dead letter {letter.message_id or fingerprint[:12]} {done}.", "success")
    return redirect(url_for("admin.system"))


def event_flow() -> Flow:
    since = utcnow() - FLOW_WINDOW
    recent = db.session.scalar(select(func.count(Event.seq)).where(Event.stored_at >= since))
    latest = db.session.scalars(select(Event).order_by(Event.seq.desc()).limit(1)).first()
    lag = (latest.stored_at - latest.timestamp).total_seconds() if latest else None
    return Flow(
        stored_per_second=recent / FLOW_WINDOW.total_seconds(),
        latest_seq=latest.seq if latest else None,
        latest_lag=lag,
        latest_stored_at=latest.stored_at if latest else None,
    )


def consumer_figures(app, web_samples) -> dict:
    """The consumer's counters: from this process when embedded, else from its local port."""
    port = app.config["CONSUMER_METRICS_PORT"]
    if is_embedded(app):
        samples, source = web_samples, "this process (embedded consumer)"
    elif port:
        samples, source = read.consumer_samples(port), f"127.0.0.1:{port}/metrics"
    else:
        return {"source": None, "reason": "CONSUMER_METRICS_PORT is 0 (off)"}
    if samples is None:
        return {"source": None, "reason": f"no answer from 127.0.0.1:{port}/metrics"}
    figures = {
        name: read.total(samples, f"pulseboard_events_{name}_total")
        for name in ("consumed", "stored", "emitted")
    }
    figures["dead_lettered"] = read.by_label(
        samples, "pulseboard_events_dead_lettered_total", "reason"
    )
    lag_sum = read.total(samples, "pulseboard_consumer_lag_seconds_sum")
    lag_count = read.total(samples, "pulseboard_consumer_lag_seconds_count")
    figures["mean_lag"] = lag_sum / lag_count if lag_sum is not None and lag_count else None
    last_batch = read.total(samples, "pulseboard_consumer_last_batch_timestamp_seconds")
    figures["since_last_batch"] = time.time() - last_batch if last_batch else None
    figures["rates"] = {
        name: _rate(name, figures[name]) for name in ("consumed", "emitted") if figures[name]
    }
    return {"source": source, **figures}


def _rate(name: str, value: float) -> float | None:
    """Per second since the previous view of this page (within 10 minutes)."""
    now = time.monotonic()
    before = _previous.get(name)
    _previous[name] = (now, value)
    if before is None or not 1 <= now - before[0] <= 600 or value < before[1]:
        return None
    return (value - before[1]) / (now - before[0])
