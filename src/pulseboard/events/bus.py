"""Where events travel: RabbitMQ, or an embedded bus on one host.

``BROKER_URL`` picks one of three kombu transports:

* ``amqp://…`` RabbitMQ. Producers, the consumer service and web instances
  anywhere; publisher confirms; what production runs.
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


def describe(url: str) -> str:
    """Where the bus is, for logs and pages; a password is masked."""
    if is_in_process(url):
        return "the in-process bus"
    if url.startswith(FOLDER):
        return f"the embedded bus in {folder(url)}"
    return Connection(url).as_uri()


def connect(url: str, transport_options: dict | None = None, **kwargs) -> Connection:
    """A kombu connection to the bus ``url`` names (not yet connected)."""
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
