"""gunicorn settings shared by `make dev`, the systemd units and the tests.

One gevent worker per process: Socket.IO keeps each connection's state in the
process that accepted it, so more capacity means more processes (each on its
own port, behind Nginx's sticky upstream), never more workers in one.
"""

import os

wsgi_app = "pulseboard.wsgi:app"
# Loopback behind the host's own Nginx; a web-only host listens on its private
# address for the Nginx of another host (WEB_BIND_ADDRESS, with TRUSTED_PROXIES).
_host = os.environ.get("WEB_BIND_ADDRESS", "").strip() or "127.0.0.1"
_port = os.environ.get("PORT", "8000")
bind = f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"
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
# Only the proxies the app trusts may tell gunicorn the scheme (the app's own
# check, pulseboard/proxies.py, does the same for the client's address).
forwarded_allow_ips = os.environ.get("TRUSTED_PROXIES", "").strip() or "127.0.0.1,::1"


def post_worker_init(worker):
    """The worker has loaded the app: what exists now (modules, the app, its config)
    lives as long as the process.  Frozen out of the collector's reach, it is no
    longer walked by every full collection, each of which stalled the whole
    instance (every socket's delivery) for 100-190 ms with 500 clients."""
    import gc

    gc.freeze()


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
