"""Real server processes for tests: started in their own session, stopped by their own pid."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import requests

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(**overrides: str) -> dict[str, str]:
    """A clean environment: nothing from the developer's shell or .env leaks in."""
    env = {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", tempfile.gettempdir()),
        "LANG": "C.UTF-8",
        "APP_ENV": "test",
        "BROKER_URL": "memory://",
    }
    env.update(overrides)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pulseboard", *args],
        input=input,
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str],
    port: int | None = None,
    ready_timeout: float = 30,
    args: tuple = (),
    prefix: tuple[str, ...] = (),
):
    """Serve ``pulseboard.wsgi:app`` as production does; yield the URL once /healthz answers.

    ``args`` go on gunicorn's command line after the bind (another app, say);
    ``prefix`` before gunicorn (``ip netns exec HOST``: on another host, where
    ``WEB_BIND_ADDRESS`` in ``env`` is that host's address and gunicorn.conf.py
    binds there, as under systemd)."""
    port = port or free_port()
    # Pages served here open sockets to here: accept this server's own origin.
    # PORT as production sets it: the instance's name in its metrics.
    env = {"PUBLIC_ORIGINS": f"http://127.0.0.1:{port}", "PORT": str(port), **env}
    address = env.get("WEB_BIND_ADDRESS")
    bind = () if address else ("--bind", f"127.0.0.1:{port}")
    address = address or "127.0.0.1"
    log_dir = Path(env.get("TMPDIR", tempfile.gettempdir()))
    log = open(log_dir / f"gunicorn-{port}.log", "w+")  # noqa: SIM115
    process = subprocess.Popen(
        # Settings from the project's gunicorn.conf.py, as in production.
        [*prefix, str(VENV_BIN / "gunicorn"), *bind, *args],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://{address}:{port}"
    try:
        wait_until_healthy(url, process, log, ready_timeout)
        yield url
    finally:
        stop(process)
        log.close()


def wait_until_healthy(
    url: str, process: subprocess.Popen, log, timeout: float, probe_timeout: float = 1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read()}")
        try:
            if requests.get(f"{url}/healthz", timeout=probe_timeout).status_code == 200:
                return
        except requests.RequestException:  # bound but the worker still booting
            pass
        time.sleep(0.1)
    log.seek(0)
    raise RuntimeError(f"server not healthy after {timeout}s:\n{log.read()}")


@contextlib.contextmanager
def temporary_database(server_url: str, prefix: str = "pb_t"):
    """A fresh, empty utf8mb4 database on a MySQL-compatible server; its URL, dropped after."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    parts = urlsplit(server_url)
    admin = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
    )
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        yield f"{server_url}/{name}?charset=utf8mb4"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


class PrivateMariaDB:
    """A MariaDB server of the test's own on a free loopback port, to stop and start
    at will (the shared server must never be restarted from a test).

    ``bind_address`` may list several addresses (``127.0.0.1,10.77.0.1``): the
    tests' own administration always goes through 127.0.0.1, so keep it first."""

    def __init__(self, directory: Path, bind_address: str = "127.0.0.1"):
        self.directory = directory
        self.bind_address = bind_address
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        # --no-defaults: the machine's my.cnf (its user, port, socket) must not apply.
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={directory / 'data'}",
                "--user=root",
                "--auth-root-authentication-method=normal",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def create_database(self, name: str = "pulseboard") -> str:
        """A utf8mb4 database on this server (gone with the server); its URL."""
        admin = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        with admin, admin.cursor() as cursor:
            cursor.execute(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{name}?charset=utf8mb4"

    def start(self, timeout: float = 30) -> None:
        log = open(self.directory / "mariadbd.log", "a")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.directory / 'data'}",
                f"--port={self.port}",
                f"--socket={self.directory / 'mariadbd.sock'}",
                f"--pid-file={self.directory / 'mariadbd.pid'}",
                f"--bind-address={self.bind_address}",
                "--user=root",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.directory / "mariadbd.log").read_text()[-2000:])
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=1
            ).close()
        except pymysql.err.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """A clean shutdown: every client connection is dropped, as in a real outage."""
        if self.process is not None:
            stop(self.process, timeout=30)
            self.process = None


class RabbitNode:
    """A RabbitMQ node of its own on free loopback ports, in a folder of its own.

    Debian's rabbitmq-server runs the node as the rabbitmq user (with that user's
    Erlang cookie, which rabbitmqctl uses too, so nodes started here can join each
    other), so its folder is that user's, in the system's temporary folder (a
    test's own is closed to other users), and its own config file replaces the
    system's fixed listener.  It listens on ``address`` (loopback unless a test's
    hosts in network namespaces must reach it)."""

    def __init__(self, name: str | None = None, address: str = "127.0.0.1"):
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("rabbitmq-server is not installed (required)")
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"{name or 'pbt' + secrets.token_hex(3)}@localhost"
        self.address = address
        self.url = f"amqp://guest:guest@{address}:{self.port}//"
        self.directory = Path(tempfile.mkdtemp(prefix="pulseboard-rabbitmq-"))

    def start(self) -> None:
        """Launch the node; ``wait_started()`` waits for it to boot."""
        directory = self.directory
        (directory / "mnesia").mkdir()
        (directory / "log").mkdir()
        (directory / "plugins").write_text("[].\n")
        config = f"listeners.tcp.local = {self.address}:{self.port}\n"
        if self.address != "127.0.0.1":
            # The guest user signs in from loopback only: let the test's hosts use it.
            config += "loopback_users.guest = false\n"
        (directory / "rabbitmq.conf").write_text(config)
        directory.chmod(0o755)
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(directory)], check=True)
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "plugins"),
        }
        subprocess.run(["rabbitmq-server", "-detached"], env=env, check=True, timeout=60)

    def wait_started(self, timeout: float = 120) -> None:
        # The detached node takes a moment to be reachable at all; then it boots.
        # Three nodes booting at once on two busy cores can take a minute or more.
        deadline = time.monotonic() + timeout
        while not _answers(self.node, wait=max(5.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"RabbitMQ node {self.node} did not start within {timeout} s; "
                    f"its log ends:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def log_tail(self, chars: int = 2000) -> str:
        logs = sorted((self.directory / "log").glob("*.log"))
        return "".join(path.read_text(errors="replace") for path in logs)[-chars:]

    def stop(self) -> None:
        """Stop the node and wait for its Erlang VM to exit; killed if it does not in time."""
        with contextlib.suppress(subprocess.SubprocessError):
            rabbitmqctl(self.node, "stop", timeout=60)
        deadline = time.monotonic() + 20  # the VM exits a moment after rabbitmqctl returns
        while self._running_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self._running_pids():  # did not stop, or was still booting
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _running_pids(self) -> list[int]:
        """The node's Erlang VM, found by the RABBITMQ_NODENAME it was started with."""
        wanted = f"RABBITMQ_NODENAME={self.node}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            try:
                if b"beam" not in (entry / "cmdline").read_bytes().split(b"\0")[0]:
                    continue
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except (OSError, ValueError):  # not a process, or gone meanwhile
                continue
        return pids

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_rabbitmq():
    """A RabbitMQ node of its own, stopped and removed after; yields (amqp URL, node name)."""
    node = RabbitNode()
    try:
        node.start()
        node.wait_started()
        yield node.url, node.node
    finally:
        node.remove()


def _answers(node: str, wait: float) -> bool:
    """Whether ``node`` has booted, asked for up to ``wait`` seconds; a node still
    booting when that runs out has not (the caller's deadline decides, with its log)."""
    try:
        rabbitmqctl(node, "await_startup", timeout=wait)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False
    return True


def rabbitmqctl(node: str, *args: str, timeout: float = 60) -> str:
    """Run ``rabbitmqctl -q -n NODE ARGS``; its output."""
    return subprocess.run(
        ["rabbitmqctl", "-q", "-n", node, *args],
        check=True,
        timeout=timeout,
        capture_output=True,
        text=True,
    ).stdout
