"""A reconnect storm: every client of one instance comes back at once after a restart.

    python bench/storm.py [--clients 5000] [--servers pulseboard,node] [--rate 20]
                          [--processes 4] [--deadline 180] [--out bench/results/storm.json]

For each server (see bench/common.py), opens ``--clients`` Node.js Socket.IO
clients that behave like the product's page (bench/node/storm.js: long-polling
first then the upgrade, the page's reconnect backoff and jitter, subscribe
with the topic's position, holes filled from the log), waits until all are
subscribed, then restarts the server (SIGTERM, as ``systemctl restart`` does,
and start again on the same port).  Pulseboard is fed ``--rate`` events a
second throughout, so the events published while it was down reach the
clients only from the event log.

Prints, per server: how long the restart took, the time from the restart
until every client was connected, subscribed, and (Pulseboard) caught up
with every event stored up to the moment the instance was back; the accept
rate (clients subscribed again per second once the server listened);
refusals (429/503 answers the clients retried), errors (5xx, timeouts,
failed subscribes), duplicates. The Node.js reference has no event log: for
it, caught up means subscribed again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from common import (
    NODE_DIR,
    SERVERS,
    TOPIC,
    node_reference_process,
    prepare,
    pulseboard,
    report,
)
from tests.pipeline import EventLog

POLL = 0.5  # seconds between progress reports


class StormClients:
    """``count`` storm clients spread over ``processes`` Node.js processes."""

    def __init__(self, url: str, cookie: str, count: int, processes: int, catch_up: bool):
        self.processes = []
        share, extra = divmod(count, processes)
        for index in range(processes):
            options = {
                "url": url,
                "cookie": cookie,
                "count": share + (1 if index < extra else 0),
                "topic": TOPIC,
                "catchUp": catch_up,
            }
            self.processes.append(
                subprocess.Popen(
                    ["node", "storm.js", json.dumps(options)],
                    cwd=NODE_DIR,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def wait_ready(self) -> None:
        for process in self.processes:
            line = process.stdout.readline()
            if "ready" not in line:
                raise RuntimeError(f"storm clients did not get ready: {line!r}")

    def send(self, command: dict) -> None:
        for process in self.processes:
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()

    def report(self, command: dict | None = None) -> dict:
        self.send(command or {"report": True})
        parts = [json.loads(process.stdout.readline()) for process in self.processes]
        merged: dict = {}
        for name in (
            "clients", "connected", "subscribed", "caughtUp", "refusals", "connectErrors",
            "timeouts", "serverErrors", "subscribeErrors", "subscribeBusy", "whileDown",
            "duplicates", "fills", "fillErrors",
        ):  # fmt: skip
            merged[name] = sum(part[name] for part in parts)
        for name in ("connectedMs", "caughtUpMs"):
            merged[name] = max((part[name]["max"] or 0) for part in parts)
        merged["lowestPosition"] = min(part["lowestPosition"] for part in parts)
        merged["transports"] = {}
        for part in parts:
            for transport, n in part["transports"].items():
                merged["transports"][transport] = merged["transports"].get(transport, 0) + n
        by_second: list[int] = []
        for part in parts:
            for second, n in enumerate(part["subscribedBySecond"]):
                while len(by_second) <= second:
                    by_second.append(0)
                by_second[second] += n
        merged["subscribedBySecond"] = by_second
        return merged

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.write(json.dumps({"quit": True}) + "\n")
                    process.stdin.flush()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def newest_seq(database_url: str) -> int:
    log = EventLog(database_url)
    try:
        return log.newest_seq(TOPIC)
    finally:
        log.close()


def storm(name: str, arguments) -> dict:
    with contextlib.ExitStack() as stack:
        if name == "pulseboard":
            server = stack.enter_context(pulseboard(restartable=True, **arguments.settings))
            url, cookie, catch_up = server.urls[0], server.cookie, True
        else:
            server = stack.enter_context(node_reference_process())
            url, cookie, catch_up = server.urls[0], "", False
        clients = StormClients(url, cookie, arguments.clients, arguments.processes, catch_up)
        stack.callback(clients.close)
        opened = time.monotonic()
        clients.wait_ready()
        first_open = time.monotonic() - opened
        feeder = None
        if catch_up:
            feeder = server.feed(arguments.rate, arguments.deadline + 60)
            stack.callback(lambda: feeder.poll() is None and feeder.send_signal(signal.SIGTERM))
            time.sleep(3)  # the clients hold live events before the restart
        clients.send({"mark": True})
        marked = time.monotonic()
        server.restart()
        restarted = time.monotonic() - marked
        clients.send({"up": True})
        if catch_up:
            clients.send({"target": newest_seq(server.env["DATABASE_URL"])})
        else:
            clients.send({"target": 0})
        progress = []
        while True:
            time.sleep(POLL)
            state = clients.report()
            elapsed = time.monotonic() - marked
            progress.append(
                {"s": round(elapsed, 1), **{k: state[k] for k in ("connected", "caughtUp")}}
            )
            if state["caughtUp"] == arguments.clients or elapsed > arguments.deadline:
                break
        subscribed_after_up = max(state["connectedMs"] / 1000 - restarted, 0.001)
        row = {
            "server": name,
            "clients": arguments.clients,
            "first_open_s": round(first_open, 1),
            "first_open_per_s": round(arguments.clients / first_open),
            "restart_s": round(restarted, 1),
            "all_connected_s": round(state["connectedMs"] / 1000, 1),
            "all_caught_up_s": round(state["caughtUpMs"] / 1000, 1),
            "connected": state["connected"],
            "caught_up": state["caughtUp"],
            "accept_per_s": round(state["connected"] / subscribed_after_up),
            "refusals": state["refusals"],
            "subscribe_busy": state["subscribeBusy"],
            "errors": state["serverErrors"]
            + state["timeouts"]
            + state["subscribeErrors"]
            + state["fillErrors"]
            + state["connectErrors"],
            "server_errors": state["serverErrors"],
            "failed_while_down": state["whileDown"],
            "timeouts": state["timeouts"],
            "connect_errors": state["connectErrors"],
            "subscribe_errors": state["subscribeErrors"],
            "duplicates": state["duplicates"],
            "fills": state["fills"],
            "transports": state["transports"],
            "subscribed_by_second": state["subscribedBySecond"],
            "progress": progress,
        }
        if catch_up:
            row["target_seq"] = newest_seq(server.env["DATABASE_URL"])
        return row


def table(rows: list[dict]) -> str:
    head = (
        f"{'server':<12}{'clients':>8}{'restart s':>10}{'connected s':>12}{'caught up s':>12}"
        f"{'accept/s':>9}{'refused':>8}{'errors':>7}{'dups':>6}{'left':>6}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(
            f"{row['server']:<12}{row['clients']:>8}{row['restart_s']:>10}"
            f"{row['all_connected_s']:>12}{row['all_caught_up_s']:>12}{row['accept_per_s']:>9}"
            f"{row['refusals']:>8}{row['errors']:>7}{row['duplicates']:>6}"
            f"{row['clients'] - row['caught_up']:>6}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--servers", default="pulseboard,node")
    parser.add_argument("--rate", type=float, default=20, help="events/s fed to Pulseboard")
    parser.add_argument("--processes", type=int, default=4, help="Node.js client processes")
    parser.add_argument("--deadline", type=float, default=180, help="seconds to wait at most")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a Pulseboard setting for this run (e.g. STREAM_JOIN_CONCURRENCY=10000)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    arguments.settings = dict(item.split("=", 1) for item in arguments.set)
    prepare()
    rows = []
    for name in arguments.servers.split(","):
        if name not in SERVERS:
            raise SystemExit(f"unknown server {name!r}")
        rows.append(storm(name, arguments))
        print(table(rows[-1:]), flush=True)
    print(table(rows))
    report({"benchmark": "storm", "rows": rows}, arguments.out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
