"""Long-polling requests an anonymous client can send leave nothing behind.

An oversized or malformed polling POST used to hang for good inside Engine.IO
(it waited for a close packet only the client's next GET would read), holding a
greenlet and a descriptor; a few dozen froze a worker.  Here 200 of them hit a
worker that takes at most 30 connections at once.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import pytest
import requests

from ..pipeline import wait_for
from ..servers import base_env, gunicorn, run_cli

ATTACKS = 200
# What a client may not send in a polling POST, and what no server should wait on.
BODIES = (
    b"4" + b"x" * 17_000,  # over STREAM_MAX_MESSAGE_BYTES (16 KiB)
    b"2",  # a ping: Engine.IO 4 clients only answer pings
    b"6",  # a noop
    b"4hello\x1e",  # an empty packet after the separator
    b"\xff\xfe",  # not UTF-8
)
GREENLETS = re.compile(r"^pulseboard_process_greenlets (\S+)$", re.MULTILINE)


@pytest.fixture
def small_worker(tmp_path: Path):
    """A production-like instance with 30 connection slots and 1 s pings (so
    abandoned polling sockets expire quickly and the counts settle)."""
    env = base_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'site.db'}",
        TMPDIR=str(tmp_path),
        GUNICORN_WORKER_CONNECTIONS="30",
        STREAM_PING_INTERVAL="1",
        STREAM_PING_TIMEOUT="1",
    )
    assert run_cli("db", "upgrade", env=env).returncode == 0
    with gunicorn(env) as url:
        yield url


def worker_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        parent = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE).group(1)
        if f"127.0.0.1:{port}".encode() in cmdline and parent != "1":
            # The worker is the gunicorn process whose parent is also gunicorn.
            parent_cmd = Path(f"/proc/{parent}/cmdline").read_bytes()
            if b"gunicorn" in parent_cmd:
                return int(pid)
    raise AssertionError(f"no gunicorn worker serves {url}")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def greenlets(url: str) -> int:
    return int(float(GREENLETS.search(requests.get(f"{url}/metrics", timeout=5).text).group(1)))


def open_polling_session(url: str, http: requests.Session) -> str:
    handshake = http.get(f"{url}/socket.io/?EIO=4&transport=polling", timeout=5)
    assert handshake.status_code == 200, handshake.text
    return json.loads(handshake.text[1:])["sid"]


def test_bad_polling_posts_are_refused_at_once_and_leave_nothing_behind(small_worker):
    url = small_worker
    pid = worker_pid(url)
    with requests.Session() as http:  # warm up: the first handshake creates what lasts
        open_polling_session(url, http)
        # ...and the database connection the worker keeps in its pool (its first use
        # may otherwise fall inside the attack and count as left behind).
        assert http.get(f"{url}/auth/login", timeout=5).status_code == 200
    wait_for(lambda: greenlets(url) < 50, timeout=15, message="an idle worker")
    descriptors_before, greenlets_before = open_descriptors(pid), greenlets(url)

    statuses = []
    for body in itertools.islice(itertools.cycle(BODIES), ATTACKS):
        with requests.Session() as http:
            sid = open_polling_session(url, http)
            # A hang shows as a timeout here: every answer must come at once.
            answer = http.post(
                f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}", data=body, timeout=5
            )
            statuses.append(answer.status_code)

    assert all(400 <= status < 500 for status in statuses), set(statuses)
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    # The abandoned Engine.IO sessions expire with their pings; then the worker is as before.
    wait_for(
        lambda: greenlets(url) <= greenlets_before + 2
        and open_descriptors(pid) <= descriptors_before + 2,
        timeout=20,
        message="greenlets and descriptors back to where they were",
    )


def test_a_well_formed_polling_post_still_reaches_engine_io(small_worker):
    url = small_worker
    with requests.Session() as http:
        sid = open_polling_session(url, http)
        # A Socket.IO connect to the default namespace: Engine.IO must accept it.
        answer = http.post(
            f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}", data=b"40", timeout=5
        )
        assert answer.status_code == 200, answer.text
        assert answer.text == "OK"
