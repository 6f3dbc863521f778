"""Error pages: styled HTML for people, JSON for the API and for clients that ask for it."""

from __future__ import annotations

from flask import Flask, Response, jsonify, make_response, render_template, request
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, SecurityError

MESSAGES = {
    400: ("Bad request", "The request could not be understood."),
    403: ("Forbidden", "You do not have access to this page."),
    404: ("Page not found", "There is nothing at this address. It may have moved."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is larger than this server accepts."),
    429: ("Too many requests", "You are going a little fast. Wait a moment and try again."),
    500: ("Something went wrong", "The error was logged and will be looked into."),
    503: ("Unavailable", "The service is not ready right now. Try again shortly."),
}


def wants_json() -> bool:
    if request.path.startswith(("/api/", "/healthz", "/readyz")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def render_error(status: int, detail: str | None = None):
    title, message = MESSAGES.get(status, MESSAGES[500] if status >= 500 else MESSAGES[400])
    message = detail or message
    if wants_json():
        return jsonify(error=title, detail=message, status=status), status
    return render_template("errors/error.html", status=status, title=title, message=message), status


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_error(400, "The form expired or was sent from elsewhere. Reload and retry.")

    # A Host (or X-Forwarded-Host) outside TRUSTED_HOSTS fails before routing, so
    # there is no URL adapter and the styled page, which builds links, cannot render.
    @app.errorhandler(SecurityError)
    def untrusted_host(error: SecurityError):
        return Response(
            "Bad request: this server does not answer to that host name.\n",
            400,
            mimetype="text/plain",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        detail = error.description if error.code in (400, 413, 429) and wants_json() else None
        if isinstance(error, RateLimitExceeded) and error.limit.error_message:
            detail = error.description  # a limit that says why, for people too
        response = make_response(render_error(error.code, detail))
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    # Flask has already logged the traceback (app.log_exception) by the time
    # this runs; the handler only chooses what the visitor sees.
    @app.errorhandler(InternalServerError)
    def internal_error(error: InternalServerError):
        return render_error(500)
