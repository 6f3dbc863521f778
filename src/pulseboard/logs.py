"""Log lines: readable text in development, JSON lines in production.

Every line written while a request or a socket event is handled carries the
request id (taken from a well-formed ``X-Request-ID`` from the proxy, else
made here, and echoed in the response), the user id when known, and the
socket id for socket events.  Messages are the code's own sentences: no
request bodies, form fields, tokens or cookies are ever added.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime

from flask import Flask, g, has_request_context, request

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}\Z")


class RequestContextFilter(logging.Filter):
    """Adds request_id, user_id and sid to records made inside a request context."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = record.user_id = record.sid = None
        if has_request_context():
            record.request_id = g.get("request_id")
            record.sid = getattr(request, "sid", None)
            # Only a user Flask-Login already loaded: logging must never query for one.
            record.user_id = getattr(g.get("_login_user"), "id", None)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "user_id", "sid"):
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def make_handler(stream, json_lines: bool) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestContextFilter())
    return handler


def configure(app: Flask) -> None:
    """Install the root handler once per process; stderr keeps stdout for command output."""
    level = app.config["LOG_LEVEL"]
    root = logging.getLogger()
    if not any(getattr(h, "pulseboard", False) for h in root.handlers):
        handler = make_handler(sys.stderr, app.config["LOG_JSON"])
        handler.pulseboard = True
        root.addHandler(handler)
        if root.level == logging.WARNING:  # untouched default
            root.setLevel(level)
    logging.getLogger("pulseboard").setLevel(level)
    app.logger.setLevel(level)

    @app.before_request
    def assign_request_id():
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = offered if _SAFE_REQUEST_ID.match(offered) else uuid.uuid4().hex

    @app.after_request
    def echo_request_id(response):
        if "request_id" in g:
            response.headers[REQUEST_ID_HEADER] = g.request_id
        return response
