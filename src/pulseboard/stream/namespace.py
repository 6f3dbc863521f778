"""The ``/stream`` Socket.IO namespace: who may connect, subscribe, and replay.

Handlers run with the server-side session of the connecting browser
(``manage_session=False``), read once at connect: the user is fixed for the
socket's life, and ending that session (sign-out, "sign out everywhere",
disabling the account) disconnects the socket from every instance.  Kiosks and
scripts connect without a session, with a read token in the handshake
(``auth: {"token": ...}``): they read the topics its patterns match, and
revoking it disconnects them.
"""

from __future__ import annotations

import logging
import time

from flask import current_app, request, session
from flask_login import current_user
from flask_socketio import (  # its ConnectionRefusedError: the message reaches the client
    ConnectionRefusedError,
    Namespace,
    disconnect,
    emit,
    join_room,
    leave_room,
)
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..api.tokens import READ, find_active_token
from ..auth.session_control import current_store_id
from ..events import store
from ..extensions import db
from ..metrics.sockets import gauges
from .access import may_read
from .admission import TOO_MANY_JOINING, JoinGate, begin_join, finish_join
from .guard import token_binding
from .kept_environ import keep_for_events
from .names import EVENTS, NAMESPACE, session_room, token_room, topic_room, user_room
from .repair import checker
from .replay import NotReading, SharedRead, replay
from .rights import sweeper
from .socket_write import deliverable, encode_events, send_packets
from .state import ABUSE_LIMIT, SocketState, registry
from .subscribe import InvalidRequest, parse_fill, parse_subscribe, parse_unsubscribe

log = logging.getLogger(__name__)


# What a client is told when the database could not answer in time (a storm, an
# outage): its connect or request failed for now and is worth retrying.
BUSY = "the server is busy; retry shortly"


class StreamNamespace(Namespace):
    def __init__(self, namespace: str, gate: JoinGate):
        super().__init__(namespace)
        self.gate = gate

    def trigger_event(self, event, *args):
        if event != "connect":
            return super().trigger_event(event, *args)
        # python-socketio calls connect with (sid, environ, auth): the place is taken
        # before Flask-SocketIO reads the session, so a refusal costs no database work.
        environ = args[1]
        if not begin_join(self.gate, environ):
            log.info("socket %s: joining refused (%d joining)", args[0], len(self.gate))
            raise ConnectionRefusedError(TOO_MANY_JOINING, {"retry": True})
        try:
            return super().trigger_event(event, *args)
        finally:
            keep_for_events(environ)  # kept for the connection's life: only what events read

    def on_connect(self, auth=None):
        try:
            self._connect(auth)
        except ConnectionRefusedError:
            finish_join(request.environ)
            raise
        except SQLAlchemyError as error:
            finish_join(request.environ)
            db.session.rollback()
            log.warning("socket %s not connected: database error (%s)", request.sid, error)
            raise ConnectionRefusedError(BUSY, {"retry": True}) from None

    def _connect(self, auth):
        if getattr(session, "unreadable", False):
            raise ConnectionRefusedError(BUSY, {"retry": True})
        auth = auth if isinstance(auth, dict) else {}
        since = auth.get("since")
        since = since if isinstance(since, int) and since >= 0 else 0
        eio_sid = self.socketio.server.manager.eio_sid_from_sid(request.sid, NAMESPACE)
        if "token" in auth:
            state = token_socket(auth["token"], eio_sid, since)
        elif current_user.is_authenticated:
            state = SocketState(
                user_id=current_user.id,
                is_admin=current_user.is_admin,
                session_key=current_store_id(),
                eio_sid=eio_sid,
                since=since,
            )
        else:
            raise ConnectionRefusedError("sign in first, or connect with a read token")
        registry.add(request.sid, state)
        if state.token_id is not None:
            join_room(token_room(state.token_id))
        else:
            join_room(user_room(state.user_id))
            join_room(session_room(state.session_key))
        gauges.connected(self.socketio.server, request.sid, state.user_id)
        app = current_app._get_current_object()
        sweeper.ensure_running(self.socketio, app)
        checker.ensure_running(self.socketio, app)
        who = f"token {state.token_id}" if state.token_id is not None else f"user {state.user_id}"
        log.info("socket %s connected: %s", request.sid, who)

    def on_disconnect(self, reason=None):
        finish_join(request.environ)
        registry.remove(request.sid)
        gauges.disconnected(request.sid)
        log.info("socket %s disconnected (%s)", request.sid, reason)

    def on_subscribe(self, data=None):
        try:
            return self._subscribe(data)
        finally:
            # Its first subscribe answered, a socket has joined (see admission.py).
            finish_join(request.environ)

    def _subscribe(self, data):
        state = self._checked_state()
        if state is None:
            return {"ok": False, "error": "too many requests; slow down"}
        if state.replaying:
            return {"ok": False, "error": "a replay is still being sent; retry after its answer"}
        config = current_app.config
        try:
            request_ = parse_subscribe(data, config)
        except InvalidRequest as error:
            return {"ok": False, "error": str(error)}
        allowed = [t for t in request_.topics if may_read(state, t, config)]
        denied = [t for t in request_.topics if t not in allowed]
        if len(set(state.filters) | set(allowed)) > config["STREAM_MAX_TOPICS"]:
            return {
                "ok": False,
                "error": f"at most {config['STREAM_MAX_TOPICS']} topics per socket",
            }
        positions = {topic: request_.position(topic, state.since) for topic in allowed}
        furthest = max(positions.values(), default=0)
        latest = store.latest_seq(db.session) if furthest else 0  # no replay, no question
        if furthest > latest:
            return {"ok": False, "error": f"since {furthest} is ahead of the log (latest {latest})"}
        for topic in allowed:
            state.filters[topic] = request_.filter
        state.begin_replay(positions)
        for topic in allowed:
            join_room(topic_room(topic))
        joined = time.monotonic()
        server = self.socketio.server
        sid = request.sid
        try:
            replayed, gap = replay(
                state,
                positions,
                lambda events, read: send_replay(server, sid, state.eio_sid, events, read),
                lambda: server.manager.queued_packets(state.eio_sid),
                joined,
            )
        except NotReading as error:
            log.warning(
                "socket %s did not read its replay (%s); disconnecting it", request.sid, error
            )
            disconnect()
            return {"ok": False, "error": "the replay was not read in time"}
        finally:
            held = state.end_replay()
        gauges.subscriptions_changed(request.sid, state.filters, config)
        metrics.replay(furthest, replayed, gap)
        if held:
            emit_events(held)
        return {
            "ok": True,
            "subscribed": sorted(state.filters),
            "denied": denied,
            "replayed": replayed,
            "gap": gap,
        }

    def on_fill(self, data=None):
        """The events of a subscribed topic after one seq and before another, from the log:
        what a client that saw a hole (an event whose ``prev`` it does not have) asks for."""
        state = self._checked_state()
        if state is None:
            return {"ok": False, "error": "too many requests; slow down"}
        try:
            request_ = parse_fill(data)
        except InvalidRequest as error:
            return {"ok": False, "error": str(error)}
        rule = state.filters.get(request_.topic)
        if rule is None:
            return {"ok": False, "error": f"not subscribed to {request_.topic!r}"}
        limit = current_app.config["STREAM_REPLAY_LIMIT"]
        page = store.events_since(db.session, request_.after, [request_.topic], limit=limit)
        inside = [event.as_dict() for event in page.events if event.seq < request_.before]
        wanted = deliverable([event for event in inside if rule.accepts(event)])
        more = len(page.events) == limit and page.events[-1].seq < request_.before - 1
        return {"ok": True, "events": wanted, "more": more, "gap": page.gap}

    def on_unsubscribe(self, data=None):
        state = self._checked_state()
        if state is None:
            return {"ok": False, "error": "too many requests; slow down"}
        try:
            topics = parse_unsubscribe(data)
        except InvalidRequest as error:
            return {"ok": False, "error": str(error)}
        for topic in topics:
            if state.filters.pop(topic, None) is not None:
                leave_room(topic_room(topic))
        gauges.subscriptions_changed(request.sid, state.filters, current_app.config)
        return {"ok": True, "subscribed": sorted(state.filters)}

    def _checked_state(self) -> SocketState | None:
        state = registry.get(request.sid)
        if state is None:
            disconnect()
            return None
        if not state.bucket.take():
            metrics.socket_rate_limited(NAMESPACE)
            if state.bucket.refused > ABUSE_LIMIT:
                log.warning("socket %s keeps flooding; disconnecting it", request.sid)
                disconnect()
            return None
        return state


def token_socket(clear, eio_sid: str, since: int) -> SocketState:
    """The state of a socket that a read token opens; refused for any other token."""
    if request.cookies.get(current_app.config["SESSION_COOKIE_NAME"]):
        # The connection would be bound to the token, and the cookie on its next request
        # would be refused (guard): one way in per connection.
        raise ConnectionRefusedError("connect with a session cookie or a token, not both")
    token = find_active_token(db.session, clear) if isinstance(clear, str) else None
    if token is None:
        raise ConnectionRefusedError("unknown or revoked token")
    if token.scope != READ:
        raise ConnectionRefusedError("a producer token may not read; create one with --read")
    return SocketState(
        user_id=None,
        is_admin=False,
        session_key=token_binding(token.token_hash),
        eio_sid=eio_sid,
        since=since,
        token_id=token.id,
        token_topics=tuple(token.topic_patterns),
    )


def send_replay(server, sid: str, eio_sid: str, events: list[dict], read: SharedRead) -> None:
    """Send a replay page's ``events`` to this socket: the whole page as the packets
    encoded once for every socket that takes it whole, a part as a message of its own."""
    if len(events) != len(read.events):
        emit_events(events)
        return
    if read.packets is None:
        read.packets = encode_events(server, read.events)[1]
    if read.packets:
        send_packets(server, sid, eio_sid, read.packets, limits=None)


def emit_events(batch: list[dict]) -> None:
    """Send ``batch`` to this socket; an event that cannot be encoded is left out,
    never the batch (nor the ack after it).

    The socket is this process's own: the message goes straight to it
    (``ignore_queue``), not round the message queue to every instance."""
    try:
        emit(EVENTS, batch, ignore_queue=True)
    except Exception:  # RecursionError, a lone surrogate...
        kept = deliverable(batch)
        if kept:
            emit(EVENTS, kept, ignore_queue=True)


def answer_error(error: Exception) -> dict:
    """The answer to a request whose handler failed: never silence, which would leave the
    client waiting for its ack; a database that could not answer is worth a retry.
    A connect that failed is refused (Flask-SocketIO would take any other answer of
    this handler for the connect handler's, and accept the socket)."""
    if request.event["message"] == "connect":
        log.error("socket %s: connect failed", request.sid, exc_info=error)
        finish_join(request.environ)
        return False
    if isinstance(error, SQLAlchemyError):
        db.session.rollback()
        log.warning("socket %s: database error (%s)", request.sid, error)
        return {"ok": False, "error": BUSY, "retry": True}
    log.error("socket %s: %s failed", request.sid, request.event["message"], exc_info=error)
    return {"ok": False, "error": "the server failed to answer this request"}


def register(socketio, gate: JoinGate) -> None:
    socketio.on_namespace(StreamNamespace(NAMESPACE, gate))
    socketio.on_error(NAMESPACE)(answer_error)
