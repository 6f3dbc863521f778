"""Gauges of this web process's live sockets: transports, users, subscriptions.

Counts move as sockets connect, subscribe and leave; nothing walks every
socket.  A Socket.IO connection usually starts on long-polling and upgrades
to WebSocket a moment later, and Engine.IO announces no upgrade: sockets still
counted as polling are looked at again every ``RECHECK_SECONDS`` and moved.
Topics are labelled by the configured pattern they match, and every
``user.<id>`` as ``user.*``, so the number of labels stays small.
"""

from __future__ import annotations

import logging
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from ..stream.names import NAMESPACE
from . import get

log = logging.getLogger(__name__)

RECHECK_SECONDS = 10
_USER_TOPIC = re.compile(r"^user\.\d+\Z")


@dataclass
class _Tracked:
    transport: str
    user_id: int | None  # None: a read token's socket
    topics: set[str] = field(default_factory=set)  # labels, not topics


class SocketGauges:
    def __init__(self):
        self.tracked: dict[str, _Tracked] = {}
        self.users: Counter[int] = Counter()
        self.instance = f"{socket.gethostname()}:0"
        self.rechecking = False

    def connected(self, server, sid: str, user_id: int | None) -> None:
        transport = _transport(server, sid) or "polling"
        self.tracked[sid] = _Tracked(transport, user_id)
        if user_id is not None:  # a read token's socket has no user
            self.users[user_id] += 1
        get().sockets.labels(transport).inc()
        self._set_instance_gauges()
        if transport == "polling" and not self.rechecking:
            self.rechecking = True
            server.start_background_task(self._recheck_forever, server)

    def disconnected(self, sid: str) -> None:
        tracked = self.tracked.pop(sid, None)
        if tracked is None:
            return
        m = get()
        m.sockets.labels(tracked.transport).dec()
        for label in tracked.topics:
            m.subscriptions.labels(label).dec()
        if tracked.user_id is not None:
            self.users[tracked.user_id] -= 1
            if self.users[tracked.user_id] <= 0:
                del self.users[tracked.user_id]
        self._set_instance_gauges()

    def subscriptions_changed(self, sid: str, topics, config) -> None:
        tracked = self.tracked.get(sid)
        if tracked is None:
            return
        patterns = (*config["STREAM_PUBLIC_TOPICS"], *config["STREAM_ADMIN_TOPICS"])
        labels = {topic_label(topic, patterns) for topic in topics}
        m = get()
        for label in labels - tracked.topics:
            m.subscriptions.labels(label).inc()
        for label in tracked.topics - labels:
            m.subscriptions.labels(label).dec()
        tracked.topics = labels

    def _set_instance_gauges(self) -> None:
        m = get()
        m.instance_sockets.labels(self.instance).set(len(self.tracked))
        m.instance_users.labels(self.instance).set(len(self.users))

    def recheck(self, server) -> None:
        """Move sockets that have upgraded since they were counted as polling."""
        m = get()
        for sid, tracked in list(self.tracked.items()):
            if tracked.transport == "polling" and _transport(server, sid) == "websocket":
                tracked.transport = "websocket"
                m.sockets.labels("polling").dec()
                m.sockets.labels("websocket").inc()
                m.upgrades.inc()

    def _recheck_forever(self, server) -> None:
        while True:
            server.sleep(RECHECK_SECONDS)
            try:
                self.recheck(server)
            except Exception:  # a gauge must never end the loop for good
                log.exception("socket gauges: recheck failed")


def topic_label(topic: str, patterns) -> str:
    """The label a topic is counted under: its pattern, ``user.*`` or ``other``."""
    if _USER_TOPIC.match(topic):
        return "user.*"
    for pattern in patterns:
        if fnmatchcase(topic, pattern):
            return pattern
    return "other"


def _transport(server, sid: str) -> str | None:
    try:
        return server.transport(sid, NAMESPACE)
    except (KeyError, TypeError):  # gone already, or a test client without Engine.IO
        return None


gauges = SocketGauges()


def set_instance(port: int) -> None:
    """Name this web instance in the per-instance gauges: host:port."""
    gauges.instance = f"{socket.gethostname()}:{port}"
