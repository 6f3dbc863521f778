"""``GET /api/v1/events``: the event log's history, a page at a time.

What a page opening a dashboard reads before it goes live: the events of some
topics, filtered like the stream (``types``, ``keys``), within a seq range
(``after``, ``before``) and a time range (``since``, ``until``), oldest first or,
with ``order=desc``, newest first.  Each event is the envelope the stream
delivers, ``seq`` and ``prev`` included.  The answer says where the next page
starts (``next``, ``cursor``) and ``newest``, the newest seq on the topics when
the page was read: the pages hold every matching event up to it, so a client
that subscribes with ``since`` = ``newest`` misses nothing and gets nothing twice.

Readers authenticate as for the SSE stream (``sse.authenticate_reader``): the
browser session with the ``/stream`` ACL, or a read token.  A topic the reader
may not read refuses the whole request, 403 naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app, jsonify, request, url_for
from flask_login import current_user

from ..events import history, store
from ..events.envelope import TOPIC
from ..events.history import HistoryPage, HistoryQuery
from ..extensions import db, limiter
from ..stream.socket_write import deliverable
from ..stream.subscribe import InvalidRequest, parse_subscribe
from . import bp
from .routes import json_error
from .sse import Refused, authenticate_reader, query_filters
from .tokens import hash_token

PARAMETERS = ("topics", "topic", "types", "keys", "after", "before", "since", "until")
PARAMETERS += ("limit", "order")
DEFAULT_LIMIT = 100
# A stream replay's page: at the entry limit (64 KiB) still a response a client can hold.
MAX_LIMIT = 1000
# A seq fits a signed 64-bit integer (MySQL's BIGINT).
MAX_SEQ_DIGITS = 18


def reader_key() -> str:
    """Rate-limit per reader: a bearer token (by its hash; no database look before the
    limit), else the signed-in user, else the client's address."""
    scheme, _, clear = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and clear.strip():
        return f"token:{hash_token(clear.strip())[:16]}"
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return f"ip:{request.remote_addr}"


@bp.get("/events")
@limiter.limit(lambda: current_app.config["API_RATE_LIMIT"], key_func=reader_key)
def history_page():
    try:
        reader = authenticate_reader()
        query = parse_history_query(current_app.config)
        denied = [topic for topic in query.topics if not reader.may_read(topic)]
        if denied:
            raise Refused(403, f"may not read: {', '.join(denied)}")
        latest = store.latest_seq(db.session)
        if query.after is not None and query.after > latest:
            raise Refused(400, f"after is ahead of the log (latest {latest})")
        page = history.read_page(db.session, query)
        gap = query.after is not None and _pruned_after(query.after)
    except InvalidRequest as error:
        return json_error(400, str(error))
    except Refused as error:
        return json_error(error.status, str(error))
    finally:
        db.session.remove()
    response = jsonify(
        events=deliverable([event.as_dict() for event in page.events]),
        order="desc" if query.descending else "asc",
        newest=page.newest,
        more=page.cursor is not None,
        cursor=_cursor(query, page),
        next=_next_url(query, page),
        gap=gap,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _pruned_after(after: int) -> bool:
    """Whether retention has deleted events after ``after``: the history no longer
    reaches back to it (the stream's ``gap``)."""
    oldest = history.oldest_seq(db.session)
    return after > 0 and oldest is not None and after + 1 < oldest


def _cursor(query: HistoryQuery, page: HistoryPage) -> dict | None:
    if page.cursor is None:
        return None
    return {"before" if query.descending else "after": page.cursor}


def _next_url(query: HistoryQuery, page: HistoryPage) -> str | None:
    """This request's own URL with the cursor and the time range's seq bounds."""
    cursor = _cursor(query, page)
    if cursor is None:
        return None
    arguments = request.args.to_dict()
    arguments.update({name: str(value) for name, value in page.bounds.items()})
    arguments.update({name: str(value) for name, value in cursor.items()})
    return url_for("api.history_page", **arguments)


def parse_history_query(config) -> HistoryQuery:
    """The query string as a ``HistoryQuery``; ``InvalidRequest`` says what is wrong."""
    args = request.args
    unknown = sorted(set(args) - set(PARAMETERS))
    if unknown:
        raise InvalidRequest(
            f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(PARAMETERS)}"
        )
    repeated = sorted(name for name in args if len(args.getlist(name)) > 1)
    if repeated:
        raise InvalidRequest(f"give each parameter once: {', '.join(repeated)}")
    filters = query_filters()
    if "topic" in args:
        if "topics" in args:
            raise InvalidRequest("give topics or topic, not both")
        filters["topics"] = [args["topic"]]
    request_ = parse_subscribe(filters, config)
    if len(request_.topics) > config["STREAM_MAX_TOPICS"]:
        raise InvalidRequest(f"at most {config['STREAM_MAX_TOPICS']} topics per request")
    for topic in request_.topics:
        if not TOPIC.match(topic):
            raise InvalidRequest(f"{topic[:200]!r} is not a topic name like market.ticks")
    query = HistoryQuery(
        topics=request_.topics,
        filter=request_.filter,
        after=_seq("after"),
        before=_seq("before"),
        since=_moment("since"),
        until=_moment("until"),
        limit=_limit(),
        descending=_order() == "desc",
    )
    if query.after is not None and query.before is not None and query.before <= query.after:
        raise InvalidRequest("before must be greater than after")
    if query.since is not None and query.until is not None and query.until <= query.since:
        raise InvalidRequest("until must be later than since")
    return query


def _seq(name: str) -> int | None:
    text = request.args.get(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_SEQ_DIGITS):
        raise InvalidRequest(f"{name} must be a seq: a whole number, 0 or more")
    return int(text)


def _moment(name: str) -> datetime | None:
    text = request.args.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
        in_utc = moment.astimezone(UTC) if moment.tzinfo is not None else None
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"{name} must be an ISO 8601 time with a zone, like 2026-11-26T14:03:07.123Z"
            " (in a URL, write + as %2B)"
        ) from None
    if in_utc is None:
        raise InvalidRequest(f"{name} needs a zone: 2026-11-26T14:03:07Z or +01:00")
    return in_utc


def _limit() -> int:
    text = request.args.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_LIMIT):
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def _order() -> str:
    order = request.args.get("order", "asc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be asc or desc")
    return order
