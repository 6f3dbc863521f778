"""The JSON API: ``POST /api/v1/events`` for producers that speak HTTP.

Authenticated by ``Authorization: Bearer <token>``; the token's topic patterns
decide what it may publish.  A request is all-or-nothing: every envelope is
checked first, and only then are they published (with broker confirms,
pipelined), so a 400 or 403 means nothing was sent.  202 carries the ids in
order, and every event it names passes the consumer's own checks, so it will be
stored.  503 names the events the broker did not confirm (and those it did).
"""

from __future__ import annotations

from flask import current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..database import utcnow
from ..events.envelope import InvalidEnvelope, from_producer, loads
from ..events.producer import PublishError, shared_producer
from ..extensions import db, limiter
from ..stream.names import NOTICE
from . import bp
from .tokens import PRODUCE, allows_topic, find_active_token

# Admin notices only: delivery shows every event of type "notice" as a toast and
# lists it on /notices, and "notices" is the topic every page listens to for
# broadcasts.  Admins send them from the admin page, the /admin namespace or the
# CLI; a producer token never may, whatever its patterns.  The type is compared
# without case, as MySQL's collation compares it when listing notices.
RESERVED_TYPES = frozenset({NOTICE})
RESERVED_TOPICS = frozenset({"notices"})


# The index is public; the event stream and the history take a session or a read token
# (``sse``, ``history``).
PUBLIC_OR_SELF_AUTHENTICATED = frozenset({"api.index", "api.stream", "api.history_page"})


def json_error(status: int, message: str, **extra):
    return jsonify(error=message, status=status, **extra), status


def token_key() -> str:
    """Rate-limit per token (by its hash prefix), falling back to the client address."""
    token = getattr(g, "api_token", None)
    return f"token:{token.id}" if token is not None else f"ip:{request.remote_addr}"


@bp.get("/")
def index():
    return jsonify(service=current_app.config["APP_SLUG"], api="v1")


@bp.before_request
def authenticate():
    if request.endpoint in PUBLIC_OR_SELF_AUTHENTICATED:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, clear = header.partition(" ")
    if scheme.lower() != "bearer" or not clear:
        return _unauthorized("send Authorization: Bearer <token>")
    token = find_active_token(db.session, clear.strip())
    if token is None:
        return _unauthorized("unknown or revoked token")
    g.api_token = token
    return None


def _unauthorized(message: str):
    response, status = json_error(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="pulseboard"'
    return response, status


@bp.post("/events")
@limiter.limit(lambda: current_app.config["API_RATE_LIMIT"], key_func=token_key)
def ingest():
    if g.api_token.scope != PRODUCE:
        return json_error(403, "this is a read token: it may read its topics, not publish")
    config = current_app.config
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return json_error(413, f"request body over {config['MAX_CONTENT_LENGTH']} bytes")
    if request.mimetype != "application/json":
        return json_error(415, "send Content-Type: application/json")
    try:
        data = loads(body, "body", config["EVENT_MAX_DEPTH"])
    except InvalidEnvelope as error:
        return json_error(400, str(error))
    items = data if isinstance(data, list) else [data]
    limit = config["API_MAX_BATCH"]
    if not items:
        return json_error(400, "no events given")
    if len(items) > limit:
        return json_error(413, f"{len(items)} events in one request; the limit is {limit}")

    envelopes = []
    for index, item in enumerate(items):
        try:
            envelopes.append(
                from_producer(item, config["EVENT_MAX_BYTES"], config["EVENT_MAX_DEPTH"])
            )
        except InvalidEnvelope as error:
            return json_error(400, f"event {index}: {error}", index=index)
    token = g.api_token
    for index, envelope in enumerate(envelopes):
        refusal = _refusal(token, envelope)
        if refusal is not None:
            return json_error(403, f"event {index}: {refusal}", index=index)
    try:
        ids = shared_producer(current_app._get_current_object()).publish_envelopes(envelopes)
    except PublishError as error:
        current_app.logger.error("ingest publish failed: %s", error)
        # What the broker confirmed is stored; ``retry`` is the rest with the ids and
        # timestamps given them, a body to post again as it is: the log keeps each once.
        unconfirmed = set(error.unconfirmed)
        return json_error(
            503,
            "the message broker did not confirm every event; retry later by posting 'retry' "
            "as the body (the same events with the same ids)",
            accepted=[envelope.id for envelope in envelopes if envelope.id not in unconfirmed],
            unconfirmed=error.unconfirmed,
            retry=[envelope.as_dict() for envelope in envelopes if envelope.id in unconfirmed],
        )
    token.last_used_at = utcnow()
    db.session.commit()
    return jsonify(accepted=ids), 202


def _refusal(token, envelope) -> str | None:
    """Why ``token`` may not publish ``envelope``, or None when it may."""
    if envelope.type.casefold() in RESERVED_TYPES:
        return f"type {envelope.type!r} is reserved for admin notices"
    if envelope.topic in RESERVED_TOPICS:
        return f"topic {envelope.topic!r} is reserved for admin notices"
    if not allows_topic(token, envelope.topic):
        return f"this token may not publish to {envelope.topic!r}"
    return None
