"""``GET /api/v1/stream``: topics as Server-Sent Events, for clients without Socket.IO.

Readers authenticate with the browser session (the ACL of ``/stream``) or a
read token (``Authorization: Bearer``; its topic patterns).  Each event goes out
with an id that holds every topic's last ``seq`` (``market.ticks=1200,audit=7``):
events on different topics arrive in separate batches, so a single number
would skip some on resume.  With ``Last-Event-ID`` the stream first replays the
log after each position, a page at a time, then goes live; live batches come
through a bounded queue (``stream.listeners``) and anything at or below a
topic's position is skipped, so a replay and the live stream never overlap.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flask import Response, current_app, request, stream_with_context
from flask_login import current_user

from ..auth.session_control import current_store_id
from ..events import store
from ..events.envelope import TOPIC
from ..extensions import db
from ..models import ApiToken
from ..stream.access import may_subscribe
from ..stream.internals import gunicorn_socket, start_manager
from ..stream.listeners import Listener, listeners
from ..stream.repair import checker
from ..stream.rights import live_rights
from ..stream.state import TopicFilter
from ..stream.subscribe import InvalidRequest, parse_subscribe
from . import bp
from .routes import json_error
from .tokens import READ, allows_topic, find_active_token

log = logging.getLogger(__name__)

POSITION = re.compile(r"^([a-z0-9_.-]+)=([0-9]{1,18})\Z")


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Reader:
    """Who reads: a session's user or a read token, and how to ask if that still holds."""

    name: str
    may_read: Callable[[str], bool]
    still_allowed: Callable[[list[str]], bool]


@bp.get("/stream")
def stream():
    config = current_app.config
    try:
        reader = authenticate_reader()
        request_ = parse_subscribe(query_filters(), config)
        topics = request_.topics
        if len(topics) > config["STREAM_MAX_TOPICS"]:
            raise Refused(400, f"at most {config['STREAM_MAX_TOPICS']} topics per stream")
        denied = [topic for topic in topics if not reader.may_read(topic)]
        if denied:
            raise Refused(403, f"may not read: {', '.join(denied)}")
        listener = Listener(reader.name, set(topics), config["SSE_MAX_QUEUED_EVENTS"])
        # Registered before the log is read: nothing falls between replay and live.
        listeners.add(listener)
        try:
            positions = start_positions(topics, _last_event_id())
        except Refused:
            listeners.remove(listener)
            raise
    except InvalidRequest as error:
        return json_error(400, str(error))
    except Refused as error:
        return json_error(error.status, str(error))
    listener.on_overflow = _closer(request.environ)
    socketio = current_app.extensions["socketio"]
    # Listening on the fan-out from the first stream, not from the first socket; and
    # what the fan-out loses is filled for streams too.
    start_manager(socketio.server)
    checker.ensure_running(socketio, current_app._get_current_object())
    body = stream_with_context(events_stream(reader, listener, request_.filter, topics, positions))
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # Nginx passes each event on at once
    return response


def authenticate_reader() -> Reader:
    config = current_app.config
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, clear = header.partition(" ")
        token = find_active_token(db.session, clear.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise Refused(401, "unknown or revoked token")
        if token.scope != READ:
            raise Refused(403, "a producer token may not read; create one with --read")
        token_id = token.id
        return Reader(
            name=f"token {token_id}",
            may_read=lambda topic: TOPIC.match(topic) is not None and allows_topic(token, topic),
            still_allowed=lambda topics: _token_still_reads(token_id),
        )
    if not current_user.is_authenticated:
        raise Refused(401, "sign in, or send Authorization: Bearer <read token>")
    user_id, is_admin, key = current_user.id, current_user.is_admin, current_store_id()
    return Reader(
        name=f"user {user_id}",
        may_read=lambda topic: may_subscribe(topic, user_id, is_admin, config),
        still_allowed=lambda topics: _session_still_reads(key, user_id, topics, config),
    )


def _token_still_reads(token_id: int) -> bool:
    try:
        token = db.session.get(ApiToken, token_id, populate_existing=True)
        return token is not None and token.revoked_at is None and token.scope == READ
    finally:
        db.session.remove()  # a long stream must not hold a connection or a stale snapshot


def _session_still_reads(key: str, user_id: int, topics: list[str], config) -> bool:
    held = live_rights([key]).get(key)
    if held is None or held[0] != user_id:
        return False
    return all(may_subscribe(topic, user_id, held[1], config) for topic in topics)


def query_filters() -> dict:
    """The query string's topics, types and keys in the shape of a ``/stream`` subscribe,
    to be checked alike (the history endpoint reads them the same way)."""
    data: dict = {"topics": _split(request.args.get("topics", ""))}
    for name in ("types", "keys"):
        if request.args.get(name):
            data[name] = _split(request.args[name])
    return data


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _last_event_id() -> str:
    return request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or ""


def parse_event_id(text: str) -> dict[str, int]:
    """``market.ticks=1200,system.metrics=1187`` → {topic: seq}."""
    positions = {}
    for part in _split(text):
        found = POSITION.match(part)
        if found is None:
            raise Refused(400, f"Last-Event-ID {text[:200]!r} is not topic=seq,topic=seq")
        positions[found.group(1)] = int(found.group(2))
    return positions


def format_event_id(positions: dict[str, int]) -> str:
    return ",".join(f"{topic}={seq}" for topic, seq in sorted(positions.items()))


def start_positions(topics: list[str], last_event_id: str) -> dict[str, int]:
    """Where each topic starts: its position in the id, else now (live only)."""
    given = parse_event_id(last_event_id)
    latest = store.latest_seq(db.session)
    ahead = {topic: seq for topic, seq in given.items() if seq > latest}
    if ahead:
        raise Refused(400, f"Last-Event-ID is ahead of the log (latest {latest})")
    db.session.remove()
    return {topic: given.get(topic, latest) for topic in topics}


def events_stream(
    reader: Reader,
    listener: Listener,
    rule: TopicFilter,
    topics: list[str],
    positions: dict[str, int],
) -> Iterator[str]:
    config = current_app.config
    heartbeat = config["SSE_HEARTBEAT_SECONDS"]
    check_every = config["STREAM_RIGHTS_CHECK_SECONDS"]
    log.info("stream %s opened: %s", reader.name, format_event_id(positions))
    try:
        yield ": connected\n\n"
        yield from replayed(rule, topics, positions)
        next_ping = time.monotonic() + heartbeat
        next_check = time.monotonic() + check_every
        while not listener.overflowed:
            now = time.monotonic()
            if now >= next_check:
                if not reader.still_allowed(topics):
                    log.info("stream %s: rights gone; closing it", reader.name)
                    return
                next_check = now + check_every
            if now >= next_ping:
                yield ": ping\n\n"
                next_ping = now + heartbeat
            batch = listener.take(timeout=max(0.0, min(next_ping, next_check) - now))
            # One write per batch, not per event: a send each cost more than the rest.
            if batch and (chunk := "".join(_messages(rule, batch, positions))):
                yield chunk
    finally:
        listeners.remove(listener)
        log.info("stream %s closed at %s", reader.name, format_event_id(positions))


def replayed(rule: TopicFilter, topics: list[str], positions: dict[str, int]) -> Iterator[str]:
    """Everything the log holds after each topic's position, a page at a time."""
    limit = current_app.config["STREAM_REPLAY_LIMIT"]
    cursor = min(positions.values())
    first = True
    while True:
        page = store.events_since(db.session, cursor, topics, limit=limit)
        db.session.remove()  # the client may take its time over this page
        if first and page.gap:
            yield "event: gap\ndata: {}\n\n"  # retention pruned some of what was asked
        first = False
        if chunk := "".join(_messages(rule, [event.as_dict() for event in page.events], positions)):
            yield chunk
        if len(page.events) < limit:
            return
        cursor = page.events[-1].seq


# Every stream of an event sends the same JSON: encode it once per process, keyed by
# its seq (unique in the log); a few seconds' worth is kept.
_ENCODED: dict[int, str] = {}
ENCODED_KEPT = 10_000


def encoded(event: dict) -> str:
    data = _ENCODED.get(event["seq"])
    if data is None:
        data = json.dumps(event, separators=(",", ":"))
        if len(_ENCODED) >= ENCODED_KEPT:
            _ENCODED.clear()
        _ENCODED[event["seq"]] = data
    return data


def _messages(rule: TopicFilter, events: list[dict], positions: dict[str, int]) -> Iterator[str]:
    for event in events:
        topic = event["topic"]
        if event["seq"] <= positions.get(topic, event["seq"]):
            continue  # sent already, or a topic this stream does not read
        positions[topic] = event["seq"]
        if not rule.accepts(event):
            continue
        try:
            data = encoded(event)
        except (TypeError, ValueError, RecursionError):
            log.exception("event %s cannot be encoded; left out", event["seq"])
            continue
        yield f"id: {format_event_id(positions)}\nevent: event\ndata: {data}\n\n"


def _closer(environ: dict) -> Callable[[], None]:
    """Closes the client's connection from outside its greenlet: a stream blocked on a
    client that stops reading never gets to look at its queue again."""
    sock = gunicorn_socket(environ)

    def close() -> None:
        if sock is None:
            return  # another server: the stream ends the next time it looks
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as error:
            log.info("closing a stream's connection: %s", error)

    return close
