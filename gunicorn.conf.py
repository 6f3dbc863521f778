"""gunicorn settings shared by `make dev`, the systemd units and the tests.

One gevent worker per process: Socket.IO keeps each connection's state in the
process that accepted it, so more capacity means more processes (each on its
own port, behind Nginx's sticky upstream), never more workers in one.
"""

import os

wsgi_app = "pulseboard.wsgi:app"
bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
worker_class = "gevent"
workers = 1
# Requests and WebSocket handshakes in flight; an upgraded WebSocket is served
# outside gunicorn's pool (stream/wire.py) and bounded by open files instead.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "20000"))
# Longer than a request should take, shorter than systemd's stop timeout.
graceful_timeout = 10
keepalive = 5
# Several instances run side by side; a shared control socket path would collide.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
# Tokens in verification links and OAuth callbacks never reach the access log.
logger_class = "pulseboard.gunicorn_logging.RedactingLogger"
# Only the local Nginx may tell us the client's address and scheme.
forwarded_allow_ips = "127.0.0.1,::1"


def child_exit(server, worker):
    """Drop an exited worker's live gauges (sockets, subscriptions) from the shared metrics."""
    from pathlib import Path

    from dotenv import dotenv_values

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or dotenv_values(
        Path(__file__).resolve().parent / ".env"
    ).get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, directory)
