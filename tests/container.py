"""A Debian 12 server for the install test: a root file system booted under
systemd-nspawn, systemd as PID 1, on a network of its own (loopback only, so
its MariaDB, RabbitMQ and Nginx take their usual ports without meeting this
machine's).

Building the root (debootstrap, then the packages ``install-deps.sh`` would
install) and the wheels of ``requirements.txt`` takes about two minutes; both
are kept in ``PULSEBOARD_TEST_CACHE`` (default ``~/.cache/pulseboard-tests``)
under a name made from what went into them, and each test run boots a copy.
Inside there is no route out: ``install-deps.sh`` finds its packages installed,
and pip installs from the wheels (the test's ``/etc/pip.conf`` says so).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .servers import PROJECT_ROOT, VENV_BIN

CACHE = Path(os.environ.get("PULSEBOARD_TEST_CACHE") or Path.home() / ".cache/pulseboard-tests")
SUITE = "bookworm"
# What install-deps.sh installs on Debian 12 for MySQL and RabbitMQ, what the
# test itself runs inside (Prometheus, blackbox_exporter, iproute2, procps), and
# what debootstrap's minimal base lacks for systemd to boot.
BASE_PACKAGES = "systemd,systemd-sysv,dbus,python3,ca-certificates,curl"
PACKAGES = (
    "jq openssl nginx certbot sqlite3 git python3.11 python3.11-venv mariadb-server "
    "mariadb-client rabbitmq-server prometheus prometheus-blackbox-exporter iproute2 procps sudo"
)
RECIPE = 1  # raise when the steps below change, so that a cached root is rebuilt
WHEELS_INSIDE = "/var/cache/pulseboard-wheels"
NSPAWN = "systemd-nspawn"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the root is built from it)."""
    for source in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        with contextlib.suppress(OSError):
            text = source.read_text()
            found = re.search(r"^(?:URIs:|deb)\s+(\S+/debian)/?\s", text + "\n", re.MULTILINE)
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian"


def _key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def _locked(name: str):
    """One builder at a time (two test runs may start together)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(command: list[str], log: Path, timeout: float, **kwargs) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False, **kwargs
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"{command[0]} failed ({result.returncode}); see {log}:\n{tail}")


def root_image() -> Path:
    """The cached Debian 12 root with every package in, built when missing."""
    image = CACHE / f"debian-12-{_key(SUITE, BASE_PACKAGES, PACKAGES, str(RECIPE))}"
    with _locked("root"):
        if (image / "etc/os-release").exists():
            return image
        building = image.with_name(image.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        log = CACHE / f"{image.name}.log"
        log.write_text("")
        _run(
            ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE,
             str(building), debian_mirror()],
            log, timeout=900,
        )  # fmt: skip
        # Packages are installed with the host's network; services are not started
        # (no systemd runs yet), and none is left running.
        policy = building / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        _run(
            [NSPAWN, "--quiet", "--register=no", "--keep-unit", "-D", str(building),
             "--setenv=DEBIAN_FRONTEND=noninteractive", "/bin/sh", "-c",
             f"apt-get update -qq && apt-get install -y -qq --no-install-recommends {PACKAGES}"
             " && apt-get clean"],
            log, timeout=900,
        )  # fmt: skip
        policy.unlink()
        building.rename(image)
        return image


def wheelhouse() -> Path:
    """Wheels of every pinned requirement and of the build backend, for pip inside."""
    requirements = (PROJECT_ROOT / "requirements.txt").read_bytes()
    backend = re.search(
        rb'requires = \["([^"]+)"\]', (PROJECT_ROOT / "pyproject.toml").read_bytes()
    ).group(1)
    wheels = CACHE / f"wheels-{_key(requirements, backend)}"
    with _locked("wheels"):
        if (wheels / ".complete").exists():
            return wheels
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        log = CACHE / f"{wheels.name}.log"
        log.write_text("")
        pip = [str(VENV_BIN / "python"), "-m", "pip"]
        requirements = str(PROJECT_ROOT / "requirements.txt")
        _run([*pip, "wheel", "--quiet", "--require-hashes", "-r", requirements, "-w", str(wheels)],
             log, timeout=900)  # fmt: skip
        _run([*pip, "download", "--quiet", "--only-binary=:all:", "-d", str(wheels),
              backend.decode(), "pip"], log, timeout=300)  # fmt: skip
        (wheels / ".complete").touch()
        return wheels


def _pid_inside(pid: int) -> int:
    """``pid``'s number in the innermost PID namespace it is in, or 0 when that is
    this machine's own (or the process is gone)."""
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text()
        numbers = re.search(r"^NSpid:\s+(.*)$", status, re.MULTILINE).group(1).split()
        return int(numbers[-1]) if len(numbers) > 1 else 0
    return 0


class Machine:
    """A copy of the cached root, booted; commands run inside with ``run``."""

    def __init__(self, root: Path, log: Path, name: str = "pulseboard-test"):
        self.root, self.log, self.name = root, log, name
        self.process: subprocess.Popen | None = None
        self.leader = 0

    @classmethod
    def copy_of(cls, image: Path, folder: Path, log: Path) -> Machine:
        root = folder / "root"
        subprocess.run(["cp", "-a", "--reflink=auto", str(image), str(root)], check=True)
        machine = cls(root, log)
        # Its own name, resolvable as on any server (debootstrap copied this machine's).
        (root / "etc/hostname").write_text(f"{machine.name}\n")
        (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {machine.name}\n")
        return machine

    def boot(self, binds: dict[Path, str], timeout: float = 120) -> float:
        """Start it and wait until systemd says the system is up; returns the seconds taken."""
        started = time.monotonic()
        command = [NSPAWN, "--quiet", "--register=no", "--keep-unit", "--private-network",
                   "--console=passive", f"--machine={self.name}", "-D", str(self.root),
                   "--boot"]  # fmt: skip
        command[1:1] = [f"--bind-ro={source}:{target}" for source, target in binds.items()]
        out = self.log.open("a")
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        try:
            self._wait_until_up(started + timeout)
        except BaseException:
            # A container that never came up is not left running (nor its Popen unreaped).
            self.process.kill()
            self.process.wait(30)
            self.leader = 0
            raise
        return time.monotonic() - started

    def _wait_until_up(self, deadline: float) -> None:
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the container stopped while booting; see {self.log}")
            self.leader = self._find_leader()
            state = None
            if self.leader:
                waited = max(1.0, deadline - time.monotonic())
                state = self.run("systemctl is-system-running --wait", check=False, timeout=waited)
                if state.stdout.strip() in ("running", "degraded"):
                    return
            if time.monotonic() > deadline:
                said = f"{state.stdout.strip()!r} ({state.stderr.strip()[-400:]})" if state else "-"
                raise RuntimeError(f"the container's systemd says {said}; see {self.log}")
            time.sleep(0.5)

    def _find_leader(self) -> int:
        """The container's PID 1, seen from here: the one process under nspawn that is
        process 1 in a PID namespace of its own. nspawn forks a short-lived helper
        before it, which must not be taken for it."""
        pending = [self.process.pid]
        while pending:
            children = subprocess.run(
                ["ps", "--ppid", str(pending.pop()), "-o", "pid="],
                capture_output=True, text=True, check=False,
            ).stdout.split()  # fmt: skip
            for child in map(int, children):
                if _pid_inside(child) == 1:
                    return child
                pending.append(child)
        return 0

    def run(
        self,
        script: str,
        check: bool = True,
        timeout: float = 300,
        env: dict | None = None,
        stdin: str = "",
    ) -> subprocess.CompletedProcess:
        """A bash script as root inside, in every one of the container's namespaces;
        ``stdin`` is what it reads."""
        environment = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            **(env or {}),
        }
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "--", "/usr/bin/env", "-i",
             *(f"{k}={v}" for k, v in environment.items()), "/bin/bash", "-c", script],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"inside the container, exit {result.returncode}: {script}\n"
                f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
        return result

    def in_network(self, *argv: str) -> list[str]:
        """A command line of this machine's that runs in the container's network."""
        return ["nsenter", "-t", str(self.leader), "-n", "--", *argv]

    def path(self, inside: str) -> Path:
        """Where a file of the container is, seen from here."""
        return self.root / inside.lstrip("/")

    def poweroff(self, timeout: float = 90) -> float:
        """A clean shutdown, as `systemctl poweroff` inside; returns the seconds taken."""
        started = time.monotonic()
        if self.process and self.process.poll() is None:
            self.run("systemctl poweroff", check=False, timeout=30)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(30)
                raise
        self.leader = 0
        return time.monotonic() - started
