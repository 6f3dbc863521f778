"""Liveness and readiness probes.

``/healthz`` says the process answers and touches nothing else, so a slow
database never gets a healthy worker restarted.  ``/readyz`` checks the
database and the broker, each within its own time limit and at the same time,
and answers 503 when either is not usable.  Everyone sees the status of each
check; the detail (errors, which can name hosts and ports, backends, latency)
goes only to the networks and token that may read ``/metrics``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import current_app, jsonify
from sqlalchemy import text

from ..events import bus
from ..extensions import db
from ..metrics.web import may_scrape
from . import bp

# Checks run beside the request so that each gets its own deadline; under
# gevent these threads are greenlets.
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    results = readiness(current_app._get_current_object())
    ready = all(result["ok"] for result in results.values())
    status = 200 if ready else 503
    if not may_scrape():
        results = {name: {"ok": result["ok"]} for name, result in results.items()}
    return jsonify(status="ready" if ready else "not ready", checks=results), status


def readiness(app) -> dict[str, dict]:
    """The database and broker checks, each within its time limit (also the System page's)."""
    db_timeout = app.config["DB_CHECK_TIMEOUT"]
    broker_timeout = app.config["BROKER_CHECK_TIMEOUT"]
    pending = {
        "database": (_checks.submit(_timed, _check_database, app), db_timeout),
        "broker": (_checks.submit(_timed, _check_broker, app, broker_timeout), broker_timeout),
    }
    results = {}
    for name, (future, timeout) in pending.items():
        try:
            results[name] = future.result(timeout=timeout)
        except FutureTimeout:
            results[name] = {"ok": False, "error": f"no answer within {timeout:g}s"}
    return results


def _timed(check, *args) -> dict:
    started = time.perf_counter()
    try:
        detail = check(*args)
    except Exception as error:  # any failure means "not ready", reported, not raised
        return {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    return {"ok": True, "latency_ms": elapsed_ms, **detail}


def _check_database(app) -> dict:
    with app.app_context():
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"backend": db.engine.dialect.name}


def _check_broker(app, timeout: float) -> dict:
    url = app.config["BROKER_URL"]
    with bus.connect(url, connect_timeout=timeout, transport_options={"max_retries": 0}) as conn:
        conn.ensure_connection(max_retries=bus.retries_for_each_node(url), timeout=timeout)
        # Which node answered (password masked): on a cluster, any one is enough.
        return {"transport": conn.transport_cls, "node": bus.reached(conn, url)}
