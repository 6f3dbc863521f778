"""Where events travel: RabbitMQ, or an embedded bus on one host.

``BROKER_URL`` picks one of three kombu transports:

* ``amqp://…`` RabbitMQ. Producers, the consumer service and web instances
  anywhere; publisher confirms; what production runs.  A cluster is named
  node by node, ``amqp://U:P@h1:5672/V;amqp://U:P@h2:5672/V``: a connection
  that cannot reach one node tries the next (kombu's failover).
* ``filesystem://`` embedded, one host (``make dev``'s default). Messages are
  files in a folder (``filesystem:///ABSOLUTE/FOLDER``, or the instance folder's
  ``bus/`` when the URL names none), so a producer in another process (the
  CLI, a script) reaches the consumer inside the web process.
* ``memory://`` embedded, one process. Nothing published from another process
  arrives; for tests and for embedding the whole pipeline in one program.

Embedded, the consumer runs inside the web process (``service.start_embedded``)
and events in flight are lost if that process dies.
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlsplit

from kombu import Connection

from ..config import PROJECT_ROOT
from ..stream.internals import folder_transport

IN_PROCESS = "memory://"
FOLDER = "filesystem://"
DEFAULT_FOLDER = PROJECT_ROOT / "instance" / "bus"
# The embedded transports poll; kombu's default second would be felt on the page.
POLLING_INTERVAL = {IN_PROCESS: 0.02, FOLDER: 0.05}


def is_embedded(url: str) -> bool:
    """True when the consumer runs inside the web process (no RabbitMQ)."""
    return url.startswith((IN_PROCESS, FOLDER))


def is_in_process(url: str) -> bool:
    """True when only this process can publish to the bus."""
    return url.startswith(IN_PROCESS)


def folder(url: str) -> Path:
    """The folder of a ``filesystem://`` bus."""
    path = urlsplit(url).path
    return Path(path) if path not in ("", "/") else DEFAULT_FOLDER


def nodes(url: str) -> list[str]:
    """The broker nodes ``url`` names: one, or a cluster's, separated by ``;``."""
    return [node.strip() for node in url.split(";") if node.strip()]


def describe(url: str) -> str:
    """Where the bus is, for logs and pages; every node's password is masked."""
    if is_in_process(url):
        return "the in-process bus"
    if url.startswith(FOLDER):
        return f"the embedded bus in {folder(url)}"
    return ";".join(Connection(node).as_uri() for node in nodes(url))


def reached(connection: Connection, url: str) -> str:
    """Where a connected ``connection`` to ``url`` is: on RabbitMQ the node it
    reached (a cluster's any one), password masked; else the bus ``url`` names.
    (An embedded bus has no host: asked for its URI, kombu warns that it names none.)"""
    if connection.transport_cls == "amqp":
        return connection.as_uri()
    return describe(url)


def retries_for_each_node(url: str) -> int:
    """``max_retries`` for ``ensure_connection`` that tries every node once (a
    single node twice): kombu moves to the next node after each failed attempt."""
    return max(1, len(nodes(url)) - 1)


# Per broker URL, the node this process last failed over to: new connections
# start there, so a node that is down costs one failed attempt, not one per
# connection (a host that does not answer costs a whole connect timeout).
_first_node: dict[str, str] = {}
_first_node_lock = threading.Lock()


class FailoverConnection(Connection):
    """kombu's connection over a cluster's nodes, for ``connect()``.

    On failing over it remembers the node it moves to (see ``_first_node``)
    and keeps the transport class it was given: kombu's ``switch()`` takes the
    next node's transport from its URL scheme, which would drop a producer's
    ``PublisherTransport`` on the first failover."""

    def __init__(self, url: str, **kwargs):
        self.broker_url = url
        self.transport_class = kwargs.get("transport")
        super().__init__(_starting_at_last_good(url), **kwargs)

    def switch(self, conn_str):
        super().switch(conn_str)
        if self.transport_class is not None:
            self.transport_cls = self.transport_class
        with _first_node_lock:
            _first_node[self.broker_url] = conn_str


def _starting_at_last_good(url: str) -> list[str]:
    listed = nodes(url)
    with _first_node_lock:
        first = _first_node.get(url)
    start = listed.index(first) if first in listed else 0
    return listed[start:] + listed[:start]


def connect(url: str, transport_options: dict | None = None, **kwargs) -> Connection:
    """A kombu connection to the bus ``url`` names (not yet connected)."""
    if len(nodes(url)) > 1:
        return FailoverConnection(url, transport_options=transport_options, **kwargs)
    options = dict(transport_options or {})
    for scheme, interval in POLLING_INTERVAL.items():
        if url.startswith(scheme):
            options.setdefault("polling_interval", interval)
    if url.startswith(FOLDER):
        root = folder(url)
        messages, control = root / "messages", root / "control"
        for path in (messages, control):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        options.update(
            data_folder_in=str(messages), data_folder_out=str(messages), control_folder=str(control)
        )
        kwargs["transport"] = folder_transport()
        url = "filesystem://"
    return Connection(url, transport_options=options, **kwargs)
