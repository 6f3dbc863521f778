"""Helpers for deployment tests: the product's own templates rendered with test
ports and paths, a real Nginx on loopback, test certificates, the wizard, and
the whole production site behind that Nginx."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pulseboard.config import load_config
from pulseboard.events.topology import Topology

from .conftest import PASSWORD, service_missing
from .pipeline import ConsumerProcess, declared_topology
from .servers import PROJECT_ROOT, base_env, free_port, gunicorn, run_cli, stop, temporary_database

DEPLOY = PROJECT_ROOT / "deploy"
SETUP = PROJECT_ROOT / "setup.sh"
VERIFY = DEPLOY / "verify.sh"
VENV = Path(sys.executable).parent.parent


def load_render():
    """deploy/render.py, the module setup.sh renders with (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("deploy_render", DEPLOY / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool(name: str, *candidates: str) -> str:
    found = shutil.which(name) or next((c for c in candidates if Path(c).exists()), None)
    if found is None:
        service_missing(name, "PATH")
    return found


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def deploy_settings(**overrides: str) -> dict[str, str]:
    """deploy.conf as setup.sh writes it, pointing at this checkout and its virtualenv."""
    settings = {
        "APP_NAME": "Pulseboard",
        "APP_SLUG": "pulseboard",
        "APP_DOMAIN": "localhost",
        "OS_TARGET": "ubuntu-24.04",
        "DEPLOY_USER": "pulseboard",
        "BASE_PORT": "8000",
        "WEB_INSTANCES": "2",
        "DB_ENGINE": "mysql",
        "MQ": "rabbitmq",
        "DEMO_PRODUCER": "no",
        "TLS_MODE": "selfsigned",
        "APP_DIR": str(PROJECT_ROOT),
        "VENV_DIR": str(VENV),
        "ENV_FILE": str(PROJECT_ROOT / ".env"),
    }
    settings.update(overrides)
    return settings


def render_site(
    directory: Path, web_ports: list[int], http_port: int, https_port: int, **overrides: str
) -> Path:
    """Render the production Nginx site into ``directory`` with loopback ports and
    temp paths only, wrap it in a main nginx.conf; returns that nginx.conf."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = make_certificate(directory)
    paths = {
        "WEB_PORTS": ",".join(map(str, web_ports)),
        "HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "HTTPS_LISTEN": f"127.0.0.1:{https_port}",
        "TLS_CERT": str(cert),
        "TLS_KEY": str(key),
        "ACME_ROOT": str(directory / "acme"),
        "NGINX_INCLUDE_DIR": str(directory / "assets" / "nginx"),
        "NGINX_ACCESS_LOG": str(directory / "access.log"),
        "NGINX_ERROR_LOG": str(directory / "error.log"),
    }
    settings = deploy_settings(**{**paths, **overrides})
    render = load_render()
    render.render_all(settings, {}, directory / "assets")
    # deploy.conf beside the assets, as setup.sh leaves it: the scripts re-render from it.
    (directory / "assets" / "deploy.conf").write_text(render.conf_text(settings))
    (directory / "acme" / ".well-known" / "acme-challenge").mkdir(parents=True, exist_ok=True)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # Run as root (CI), the workers would otherwise drop to "nobody" and lose the temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'};\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        f"{temp_paths}\n"
        f"    access_log {directory / 'access.log'};\n"
        f"    include {directory / 'assets' / 'nginx' / (settings['APP_SLUG'] + '.conf')};\n"
        "}\n"
    )
    return conf


def nginx_binary() -> str:
    return tool("nginx", "/usr/sbin/nginx")


def nginx_test(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@contextlib.contextmanager
def running_nginx(conf: Path, https_port: int, timeout: float = 10):
    checked = nginx_test(conf)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [nginx_binary(), "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", https_port), timeout=1),
            ):
                break
            assert process.poll() is None, (conf.parent / "error.log").read_text()
            assert time.monotonic() < deadline, "Nginx did not start listening"
            time.sleep(0.05)
        yield
    finally:
        stop(process)


@contextlib.contextmanager
def production_site(tmp: Path, rabbitmq_url: str, mysql_server: str, **settings: str):
    """https://localhost:<port> → Nginx → two gunicorn instances; consumer on RabbitMQ.

    ``settings`` are extra environment for the app (STREAM_RIGHTS_CHECK_SECONDS…).
    Yields what tests reach it by: its URLs, the instances' ports, the app's
    config and environment (for the CLI), the test CA and Nginx's own directory
    (its access log is there)."""
    web_ports = [free_port(), free_port()]
    http_port, https_port = free_port(), free_port()
    url = f"https://localhost:{https_port}"
    conf = render_site(tmp / "nginx", web_ports, http_port, https_port)
    with contextlib.ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        env = base_env(
            APP_ENV="production",
            SECRET_KEY=secrets.token_urlsafe(48),
            APP_SLUG=f"pbt-{secrets.token_hex(4)}",
            APP_DOMAIN="localhost",
            DATABASE_URL=stack.enter_context(temporary_database(mysql_server)),
            BROKER_URL=rabbitmq_url,
            PUBLIC_ORIGINS=url,
            PROXY_FIX_HOPS="1",
            TMPDIR=str(tmp),
            AUTH_RATE_LIMIT="1000/minute",
            CONSUMER_BATCH_WAIT_MS="5",
            **settings,
        )
        assert run_cli("db", "upgrade", env=env).returncode == 0
        created = run_cli(
            "users", "create", "bob@example.com", "--password-stdin", env=env, input=PASSWORD + "\n"
        )
        assert created.returncode == 0, created.stderr
        # requests (and the Socket.IO client's polling) trust the test certificate.
        patch.setenv("REQUESTS_CA_BUNDLE", str(conf.parent / "cert.pem"))
        stack.enter_context(declared_topology(rabbitmq_url, Topology.from_config(load_config(env))))
        for port in web_ports:
            stack.enter_context(gunicorn(env, port=port))
        consumer = ConsumerProcess(env, tmp / "consumer.log")
        stack.callback(consumer.stop)
        consumer.wait_connected()
        stack.enter_context(running_nginx(conf, https_port))
        yield {
            "url": url,
            "http_url": f"http://localhost:{http_port}",
            "http_port": http_port,
            "https_port": https_port,
            "web_ports": web_ports,
            "config": load_config(env),
            "env": env,
            "cacert": conf.parent / "cert.pem",
            "nginx_dir": conf.parent,
            "tmp": tmp,
        }


def run_verify(url: str, http_url: str, cacert: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(VERIFY), "--cacert", str(cacert), "--http-url", http_url, url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def run_setup(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SETUP), *args],
        input=input, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/")},
    )  # fmt: skip
