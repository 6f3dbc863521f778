"""Producer-to-browser latency and memory per idle connection, through the real RabbitMQ.

    python bench/stream_latency.py [--clients 100] [--rate 200] [--seconds 20] [--idle 1000]

Starts what it needs on loopback (a migrated MySQL database, one gunicorn
gevent instance, the consumer service), connects Node.js socket.io-client
clients (bench/node, installed with npm on first use) signed in as one user,
and publishes ``--rate`` events/s to ``market.ticks`` for ``--seconds``.
Latency is each client's receive time minus the event's producer timestamp.
Memory per idle connection is the web worker's RSS growth for ``--idle``
connected, subscribed clients over its RSS with none, divided by their number.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pymysql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.pipeline import ConsumerProcess, declared_topology  # noqa: E402
from tests.servers import base_env, free_port, gunicorn, run_cli  # noqa: E402
from tests.streaming import signed_in_session  # noqa: E402

from pulseboard.config import load_config  # noqa: E402
from pulseboard.events.producer import Producer  # noqa: E402
from pulseboard.events.topology import Topology  # noqa: E402

BROKER = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
MYSQL = os.environ.get("BENCH_MYSQL_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
NODE_DIR = ROOT / "bench" / "node"
PASSWORD = "bench password 123"  # noqa: S105 - a throwaway account in a throwaway database


def ensure_node_clients() -> None:
    if not (NODE_DIR / "node_modules" / "socket.io-client").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True
        )


def worker_rss_kb(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    total = 0
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def gunicorn_master(port: int) -> int:
    found = subprocess.run(
        ["pgrep", "-f", f"gunicorn --bind 127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return min(int(pid) for pid in found)


def start_clients(url, cookie, count, seconds) -> subprocess.Popen:
    process = subprocess.Popen(
        ["node", "clients.js", url, cookie, str(count), "market.ticks", "websocket", str(seconds)],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if not line or "ready" not in line:
        raise RuntimeError(f"clients did not get ready: {line!r}")
    return process


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def publish_paced(config, rate: float, seconds: float) -> int:
    producer = Producer.from_config(config)
    interval = 1.0 / rate
    sent = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            producer.publish("market.ticks", "tick", {"n": sent}, key="ACME")
            sent += 1
            delay = started + sent * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    finally:
        producer.close()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()
    ensure_node_clients()

    database = f"pb_bench_{secrets.token_hex(4)}"
    admin = pymysql.connect(host="127.0.0.1", user="root")
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    port = free_port()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"pb-bench-{secrets.token_hex(3)}"  # noqa: S108
    tmp.mkdir(parents=True)
    env = base_env(
        APP_SLUG=f"bench-{secrets.token_hex(3)}",
        DATABASE_URL=f"{MYSQL}/{database}?charset=utf8mb4",
        BROKER_URL=BROKER,
        TMPDIR=str(tmp),
        PUBLIC_ORIGINS=f"http://127.0.0.1:{port}",
        AUTH_RATE_LIMIT="1000/minute",
    )
    config = load_config(env)
    try:
        assert run_cli("db", "upgrade", env=env).returncode == 0
        run_cli(
            "users",
            "create",
            "bench@example.com",
            "--password-stdin",
            env=env,
            input=PASSWORD + "\n",
        )
        with declared_topology(BROKER, Topology.from_config(config)), gunicorn(env, port) as url:
            consumer = ConsumerProcess(env, tmp / "consumer.log")
            try:
                consumer.wait_connected()
                browser = signed_in_session(url, "bench@example.com", PASSWORD)
                cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
                master = gunicorn_master(port)

                rss_before = worker_rss_kb(master)
                idle = start_clients(url, cookie, args.idle, 15)
                time.sleep(2)
                rss_idle = worker_rss_kb(master)
                idle.wait(30)
                per_connection_kb = (rss_idle - rss_before) / args.idle

                clients = start_clients(url, cookie, args.clients, args.seconds + 5)
                sent = publish_paced(config, args.rate, args.seconds)
                report = json.loads(clients.stdout.readline())
                clients.wait(30)
            finally:
                consumer.stop()
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.close()

    latencies = sorted(report["latencies"])
    expected = sent * args.clients
    result = {
        "clients": args.clients,
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "published": sent,
        "delivered": report["received"],
        "delivered_ratio": round(report["received"] / expected, 4) if expected else None,
        "client_errors": report["errors"],
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p90": percentile(latencies, 0.90),
            "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else None,
            "mean": round(statistics.fmean(latencies), 2) if latencies else None,
        },
        "idle_connections": args.idle,
        "worker_rss_mb": {
            "no_clients": round(rss_before / 1024, 1),
            "idle_clients": round(rss_idle / 1024, 1),
        },
        "kb_per_idle_connection": round(per_connection_kb, 1),
    }
    print(f"{'clients x rate x seconds':<34} {args.clients} x {args.rate:g}/s x {args.seconds:g}s")
    print(f"{'delivered / expected':<34} {report['received']} / {expected}")
    for name in ("p50", "p90", "p99", "max"):
        print(f"{'latency ' + name + ' (ms)':<34} {result['latency_ms'][name]}")
    print(
        f"{'KB per idle connection':<34} {result['kb_per_idle_connection']} "
        f"({args.idle} idle clients)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
