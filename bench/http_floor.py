"""What one request costs the web worker below the product: the floor under a poll.

    python bench/http_floor.py [--seconds 5] [--rounds 3] [--concurrency 50] [--profile FILE]

A long-polling client makes an HTTP request for every batch it takes, so the
web worker's CPU per poll response bounds how many polling clients one instance
serves, and how fresh their events are.  This splits that cost in two, each
beside a baseline in the same run:

* **the server**: keep-alive clients (Node.js, ``bench/node/http_load.js``) ask
  one poll URL again as soon as each answer ends, and an app that only returns
  a poll response of the same size answers (``bench/floor_app.py``), served by
  gunicorn's gevent worker with the product's ``gunicorn.conf.py``; beside it,
  Node.js's ``http`` module answers the same (``bench/node/http_floor.js``).
  The figure is the serving process's CPU over the requests it answered.
* **the product**: Pulseboard's whole WSGI stack (Flask, the socket checks,
  Engine.IO) answering a poll of an open Engine.IO session that has one packet
  waiting, called in this process with no server at all, timed with
  ``time.process_time``.

The two added up are what a poll costs below the rounds;
``bench/delivery.py --transports polling`` measures the whole (its
``webCPU`` over its responses).  ``--profile FILE`` samples gunicorn's worker
with py-spy during the first round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    NODE_DIR,
    ROOT,
    Profile,
    children,
    cpu_seconds,
    free_port,
    prepare,
    print_heaviest,
    report,
)
from werkzeug.test import EnvironBuilder

from pulseboard.extensions import db, socketio
from pulseboard.factory import create_app

PACKET = '4["events",' + json.dumps(
    [{"id": "e" * 32, "topic": "market.ticks", "type": "tick", "seq": 123456,
      "timestamp": "2026-12-03T10:00:00.000000+00:00", "key": "ACME",
      "payload": {"price": 101.25, "volume": 300}}]
) + "]"  # fmt: skip
POLL_PATH = "/socket.io/?EIO=4&transport=polling&t=PbXq1Zk&sid={sid}"
COOKIE = "session=" + "s" * 43
SERVERS = ("gunicorn", "node")


def start(server: str, port: int) -> tuple[subprocess.Popen, int]:
    """The serving process and the pid whose CPU is its figure."""
    env = {**os.environ, "FLOOR_BODY": PACKET}
    if server == "node":
        process = subprocess.Popen(
            ["node", "http_floor.js", str(port), PACKET], cwd=NODE_DIR,
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert "listening" in process.stdout.readline()
        return process, process.pid
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}",
         "--pythonpath", str(ROOT / "bench"),
         "floor_app:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not children(process.pid):
        assert time.monotonic() < deadline, "gunicorn did not start a worker"
        time.sleep(0.1)
    time.sleep(1.0)  # the worker has imported the app
    return process, children(process.pid)[0]


def serve_and_load(
    server: str, seconds: float, concurrency: int, profile: Path | None = None
) -> dict:
    port = free_port()
    process, pid = start(server, port)
    sampler = None
    try:
        url = f"http://127.0.0.1:{port}" + POLL_PATH.format(sid="Kx7YbQ2mN1pLr5aZAAAB")
        load = [str(NODE_DIR / "http_load.js"), url, str(concurrency)]
        subprocess.run(["node", *load, "1", COOKIE], check=True, capture_output=True)  # warm-up
        if profile is not None:
            sampler = Profile(pid, profile)
        cpu = cpu_seconds(pid)
        began = time.monotonic()
        answered = json.loads(
            subprocess.run(
                ["node", *load, str(seconds), COOKIE], check=True, capture_output=True, text=True
            ).stdout
        )
        wall = time.monotonic() - began
        used = cpu_seconds(pid) - cpu
    finally:
        if sampler is not None:
            sampler.stop()
        process.terminate()
        process.wait(timeout=20)
    done = answered["done"]
    return {
        "server": server,
        "requests": done,
        "errors": answered["errors"],
        "requests_per_s": round(done / wall),
        "cpu": round(used / wall, 2),
        "cpu_us_per_request": round(used / done * 1e6, 1),
    }


def product_poll(polls: int) -> dict:
    """Pulseboard's WSGI stack answering ``polls`` polls, each with one packet waiting."""
    with tempfile.TemporaryDirectory() as directory:
        app = create_app({
            "APP_ENV": "test", "DATABASE_URL": f"sqlite:///{directory}/floor.db",
            "BROKER_URL": "memory://", "RATELIMIT_ENABLED": "0",
        })  # fmt: skip
        with app.app_context():
            db.create_all()
        answered = {}

        def start_response(status, headers, exc_info=None):
            answered["status"] = status

        def environ(path: str) -> dict:
            return EnvironBuilder(
                path=path, base_url="http://127.0.0.1",
                headers={"Cookie": COOKIE, "Accept": "*/*"},
            ).get_environ()  # fmt: skip

        def get(request: dict) -> bytes:
            return b"".join(app(request, start_response))

        sid = json.loads(get(environ("/socket.io/?EIO=4&transport=polling"))[1:])["sid"]
        path = POLL_PATH.format(sid=sid)
        engine = socketio.server.eio
        for _ in range(200):  # warm-up
            engine.send(sid, PACKET[1:])
            get(environ(path))
        # The environs are built beforehand, and queueing a packet is timed on its own:
        # neither is the stack's work.
        requests = [environ(path) for _ in range(polls)]
        queued = time.process_time()
        for _ in range(polls):
            engine.send(sid, PACKET[1:])
        queued = time.process_time() - queued
        get(environ(path))  # takes those packets, so that each timed poll answers one
        began = time.process_time()
        for request in requests:
            engine.send(sid, PACKET[1:])
            body = get(request)
        used = time.process_time() - began - queued
        assert answered["status"].startswith("200") and body == PACKET.encode(), body
    return {
        "server": "pulseboard, in-process",
        "requests": polls,
        "cpu_us_per_request": round(used / polls * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--polls", type=int, default=5000)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--profile", type=Path, help="py-spy folded stacks of gunicorn's worker in the first round"
    )
    options = parser.parse_args()
    servers = options.servers.split(",")
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"--servers: no such server {', '.join(sorted(unknown))} (of {SERVERS})")
    prepare()
    runs = []
    for round_ in range(options.rounds):
        for server in servers:  # alternated, so a change in the machine touches each
            sampled = options.profile if server == "gunicorn" and round_ == 0 else None
            run = serve_and_load(server, options.seconds, options.concurrency, sampled)
            run["round"] = round_ + 1
            runs.append(run)
            print(json.dumps(run), flush=True)
        run = product_poll(options.polls)
        run["round"] = round_ + 1
        runs.append(run)
        print(json.dumps(run), flush=True)
    rows = []
    heading = f"{'what':26} {'µs CPU per request':>19} {'requests/s':>11} {'CPU':>5}"
    print(f"\n{heading}   (median of {options.rounds})")
    for name in [*servers, "pulseboard, in-process"]:
        mine = [run for run in runs if run["server"] == name]
        row = {
            "server": name,
            "cpu_us_per_request": statistics.median(run["cpu_us_per_request"] for run in mine),
            "cpu_us_rounds": [run["cpu_us_per_request"] for run in mine],
        }
        if "requests_per_s" in mine[0]:
            row["requests_per_s"] = statistics.median(run["requests_per_s"] for run in mine)
            row["cpu"] = statistics.median(run["cpu"] for run in mine)
        rows.append(row)
        print(f"{name:26} {row['cpu_us_per_request']:>19} {row.get('requests_per_s', ''):>11} "
              f"{row.get('cpu', ''):>5}")  # fmt: skip
    if options.profile is not None:
        print_heaviest(options.profile, "gunicorn's worker answering the floor app")
    floor = {row["server"]: row["cpu_us_per_request"] for row in rows}
    if "gunicorn" in floor:
        total = floor["gunicorn"] + floor["pulseboard, in-process"]
        print(f"\ngunicorn + the product's stack: {total:.0f} µs a poll", end="")
        if "node" in floor:
            print(
                f"; gunicorn alone is {floor['gunicorn'] / floor['node']:.1f} times Node.js's http"
            )
        print()
    result = {"benchmark": "http_floor", "seconds": options.seconds, "rows": rows, "runs": runs}
    report({**result, "concurrency": options.concurrency}, options.out, echo=False)


if __name__ == "__main__":
    main()
