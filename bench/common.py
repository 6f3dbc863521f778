"""What the stream benchmarks share: the servers under test, the clients, the figures.

Three servers speak the same ``/stream`` protocol to the same Node.js clients:

* ``pulseboard``: gunicorn gevent instances of the product, its consumer
  service, a MySQL-compatible database and RabbitMQ; events go producer →
  RabbitMQ → consumer (validated, stored) → Socket.IO queue → web → clients.
* ``flask-socketio``: a plain Flask-SocketIO app on the same RabbitMQ message
  queue, fed one ``socketio.emit`` per event (``bench/baseline_app.py``).
* ``node``: a Node.js Socket.IO 4 server emitting each event in-process
  (``bench/node/reference.js``).
* ``node-batched``: the same server batching each room's events on a timer as
  Pulseboard's rounds do (``NODE_ROUND_MS``, 10 ms by default): the strongest peer,
  the same design on the fastest runtime.

Everything binds to loopback and is stopped when the benchmark ends.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import resource
import secrets
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import requests
from kombu import Connection, Consumer, Exchange, Queue
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.faults import WebInstance  # noqa: E402
from tests.pipeline import ConsumerProcess, declared_topology  # noqa: E402
from tests.servers import (  # noqa: E402
    base_env,
    free_port,
    gunicorn,
    run_cli,
    stop,
    temporary_database,
)
from tests.streaming import signed_in_session  # noqa: E402

from pulseboard.config import load_config  # noqa: E402
from pulseboard.events.envelope import new_envelope  # noqa: E402
from pulseboard.events.producer import Producer  # noqa: E402
from pulseboard.events.topology import Topology  # noqa: E402

BROKER = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
MYSQL = os.environ.get("BENCH_MYSQL_SERVER", "mysql+pymysql://root@127.0.0.1:3306")
NODE_DIR = ROOT / "bench" / "node"
TOPIC = "market.ticks"
PASSWORD = "bench password 123"  # noqa: S105 - a throwaway account in a throwaway database
SERVERS = ("pulseboard", "flask-socketio", "node", "node-batched")
# node-batched's rest after each message of a room, in ms.
NODE_ROUND_MS = int(os.environ.get("NODE_ROUND_MS", "10"))


def prepare() -> None:
    """Node.js packages on first use, and room for thousands of sockets."""
    if not (NODE_DIR / "node_modules" / "socket.io").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True
        )
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it


# --- process figures -------------------------------------------------------------------


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_pids() -> list[int]:
    """RabbitMQ's and the database server's processes, when they run on this machine."""
    found = []
    for name in ("beam.smp", "mariadbd", "mysqld"):
        output = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
        found += [int(pid) for pid in output.split()]
    return found


class Meter:
    """CPU used by some processes between ``start()`` and ``stop()``."""

    def __init__(self, pids: list[int]):
        self.pids = pids

    def start(self) -> None:
        self.started = time.monotonic()
        self.cpu = sum(cpu_seconds(pid) for pid in self.pids)

    def stop(self) -> float:
        """CPU seconds per wall second (1.0 = one core busy)."""
        wall = time.monotonic() - self.started
        return (sum(cpu_seconds(pid) for pid in self.pids) - self.cpu) / wall


# --- the servers -----------------------------------------------------------------------


class Server:
    """One server under test: its URLs, the cookie its clients need, its feed."""

    name = ""
    urls: list[str]
    cookie = ""
    web_pids: list[int]  # the processes holding the sockets
    other_pids: list[int]  # whatever else the path needs (consumer, broker, database)
    consumer_pid = 0  # Pulseboard's consumer service
    env: dict[str, str]  # Pulseboard's settings (database, broker, slug), for the producer
    log_dir: Path  # Pulseboard's gunicorn and consumer logs

    def feed(self, rate: float, seconds: float) -> subprocess.Popen | None:
        raise NotImplementedError


def gunicorn_worker(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    masters = subprocess.run(
        ["pgrep", "-f", f"gunicorn --bind 127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    master = min(int(pid) for pid in masters)
    return children(master)[0]


@contextlib.contextmanager
def pulseboard(instances: int = 1, restartable: bool = False, **settings: str):
    """The product on the shared RabbitMQ and database server. With ``restartable``,
    ``server.restart()`` stops the (first) instance as systemd does and starts it again."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"pb-bench-{secrets.token_hex(3)}"  # noqa: S108
    tmp.mkdir(parents=True)
    ports = [free_port() for _ in range(instances)]
    with contextlib.ExitStack() as stack:
        env = base_env(
            APP_SLUG=f"bench-{secrets.token_hex(3)}",
            DATABASE_URL=stack.enter_context(temporary_database(MYSQL, prefix="pb_bench")),
            BROKER_URL=BROKER,
            TMPDIR=str(tmp),
            PUBLIC_ORIGINS=",".join(f"http://127.0.0.1:{port}" for port in ports),
            AUTH_RATE_LIMIT="1000/minute",
            **settings,
        )
        config = load_config(env)
        assert run_cli("db", "upgrade", env=env).returncode == 0
        created = run_cli(
            "users", "create", "bench@example.com", "--password-stdin", env=env, input=PASSWORD
        )
        assert created.returncode == 0, created.stderr
        stack.enter_context(declared_topology(BROKER, Topology.from_config(config)))
        # Runs once the web instances and the consumer are gone (an exit stack unwinds last in
        # first out): Socket.IO's fanout exchange outlives them otherwise.
        stack.callback(delete_exchange, BROKER, config["SOCKETIO_CHANNEL"])
        if restartable:
            web = [WebInstance(env, port, tmp) for port in ports]
            for instance in web:
                stack.callback(instance.stop)
                instance.start()
            urls = [instance.url for instance in web]
        else:
            urls = [stack.enter_context(gunicorn(env, port)) for port in ports]
        consumer = ConsumerProcess(env, tmp / "consumer.log")
        stack.callback(consumer.stop)
        consumer.wait_connected()
        browser = signed_in_session(urls[0], "bench@example.com", PASSWORD)
        server = Server()
        server.name = "pulseboard"
        server.urls = urls
        server.cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
        server.web_pids = [gunicorn_worker(url) for url in urls]
        server.other_pids = [consumer.process.pid, *service_pids()]
        server.consumer_pid = consumer.process.pid
        server.env = env
        server.log_dir = tmp
        server.feed = lambda rate, seconds: feed_pulseboard(env, rate, seconds)
        server.socketio_channel = config["SOCKETIO_CHANNEL"]
        if restartable:

            def restart() -> None:
                web[0].stop()
                # In a storm the clients reach the new process before its first /healthz,
                # which then waits its turn among theirs: the restart ends at its answer.
                web[0].start(ready_timeout=180, probe_timeout=30)
                server.web_pids[0] = gunicorn_worker(urls[0])

            server.restart = restart
        yield server


def delete_exchange(broker_url: str, name: str) -> None:
    with Connection(broker_url) as connection:
        connection.default_channel.exchange_delete(name)


def feed_pulseboard(env: dict[str, str], rate: float, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "feed", "--rate", str(rate), "--seconds", str(seconds)],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def publish_paced(config, rate: float, seconds: float) -> int:
    """Publish ``rate`` events a second to RabbitMQ, each confirmed, for ``seconds``."""
    producer = Producer.from_config(config)
    started = time.monotonic()
    sent = 0
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - sent
            if due > 0:
                producer.publish_envelopes(
                    new_envelope(TOPIC, "tick", {"n": sent + i, "price": 101.5}, key="ACME")
                    for i in range(due)
                )
                sent += due
            time.sleep(0.002)
    finally:
        producer.close()
    return sent


@contextlib.contextmanager
def flask_socketio():
    channel = f"pb-bench-baseline-{secrets.token_hex(3)}"
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"pb-bench-{secrets.token_hex(3)}"  # noqa: S108
    tmp.mkdir(parents=True)
    env = base_env(BENCH_BROKER_URL=BROKER, BASELINE_CHANNEL=channel, TMPDIR=str(tmp))
    args = ("--access-logfile", "/dev/null", "bench.baseline_app:app")
    with gunicorn(env, args=args) as url:
        server = Server()
        server.name = "flask-socketio"
        server.urls = [url]
        server.web_pids = [gunicorn_worker(url)]
        server.other_pids = service_pids()
        server.feed = lambda rate, seconds: subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "baseline_app.py"),
                "--rate",
                str(rate),
                "--seconds",
                str(seconds),
            ],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        yield server


def start_node_reference(port: int, round_ms: int = 0) -> subprocess.Popen:
    process = subprocess.Popen(
        ["node", "reference.js", str(port), str(round_ms)],
        cwd=NODE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert "listening" in process.stdout.readline()
    return process


@contextlib.contextmanager
def node_reference_process():
    """The Node.js reference alone, with ``server.restart()``; it is never fed."""
    port = free_port()
    holder = [start_node_reference(port)]
    server = Server()
    server.name = "node"
    server.urls = [f"http://127.0.0.1:{port}"]
    server.web_pids = [holder[0].pid]
    server.other_pids = []

    def restart() -> None:
        stop(holder[0])
        holder[0] = start_node_reference(port)
        server.web_pids = [holder[0].pid]

    server.restart = restart
    try:
        yield server
    finally:
        stop(holder[0])


@contextlib.contextmanager
def node_reference(round_ms: int = 0):
    port = free_port()
    process = start_node_reference(port, round_ms)
    try:
        server = Server()
        server.name = "node-batched" if round_ms else "node"
        server.urls = [f"http://127.0.0.1:{port}"]
        server.web_pids = [process.pid]
        server.other_pids = []

        def feed(rate: float, seconds: float) -> None:
            process.stdin.write(json.dumps({"rate": rate, "seconds": seconds}) + "\n")
            process.stdin.flush()

        server.feed = feed
        yield server
    finally:
        stop(process)


@contextlib.contextmanager
def server_named(name: str, instances: int = 1, settings: dict[str, str] | None = None):
    """A server under test; ``settings`` are Pulseboard's (its web instances and consumer)."""
    if name == "pulseboard":
        with pulseboard(instances, **(settings or {})) as server:
            yield server
    elif instances != 1:
        raise SystemExit(f"{name}: only one instance")
    elif name == "flask-socketio":
        with flask_socketio() as server:
            yield server
    elif name == "node-batched":
        with node_reference(NODE_ROUND_MS) as server:
            yield server
    else:
        with node_reference() as server:
            yield server


# --- the clients -----------------------------------------------------------------------


class Clients:
    """Node.js socket.io-client processes, one per server URL, sharing ``count`` clients."""

    def __init__(self, server: Server, count: int, seconds: float, transport: str = "websocket"):
        self.processes = []
        share, extra = divmod(count, len(server.urls))
        for index, url in enumerate(server.urls):
            options = {
                "url": url,
                "cookie": server.cookie,
                "count": share + (1 if index < extra else 0),
                "topic": TOPIC,
                "transport": transport,
                "seconds": seconds,
            }
            self.processes.append(
                subprocess.Popen(
                    ["node", "clients.js", json.dumps(options)],
                    cwd=NODE_DIR,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def wait_ready(self) -> dict:
        """Once every client is subscribed (or failed): how many are ready, how many failed."""
        totals = {"ready": 0, "errors": 0}
        for process in self.processes:
            line = process.stdout.readline()
            if "ready" not in line:
                raise RuntimeError(f"clients did not get ready: {line!r}")
            for name, value in json.loads(line).items():
                totals[name] += value
        return totals

    def start_window(self) -> None:
        for process in self.processes:
            process.stdin.write("go\n")
            process.stdin.flush()

    def reports(self) -> dict:
        merged = {"received": 0, "messages": 0, "errors": 0, "disconnects": 0, "seconds": 0.0}
        histogram: Counter[int] = Counter()
        for process in self.processes:
            report = json.loads(process.stdout.readline())
            process.wait(30)
            for name in ("received", "messages", "errors", "disconnects"):
                merged[name] += report[name]
            merged["seconds"] = max(merged["seconds"], report["seconds"])
            histogram.update({int(ms): n for ms, n in report["histogram"].items()})
        merged["latency_ms"] = percentiles(histogram)
        return merged

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()


def fanout_queue(channel: str, name: str):
    """A queue of its own bound to Socket.IO's fanout exchange: gets what every web
    instance gets, and goes with its connection."""
    return Queue(
        f"{name}.{channel}",
        Exchange(channel, type="fanout", durable=False),
        exclusive=True,
        durable=False,
    )


def tap_emitted(channel: str, window, stop, results) -> None:
    """Each event's age as it reaches Socket.IO's fanout exchange (stored by the
    consumer, on its way to the web instances), while ``window`` is set."""
    histogram: Counter[int] = Counter()
    queue = fanout_queue(channel, "bench-tap")

    def on_message(message):
        now = time.time()
        if window.is_set():
            # One "events" message per topic and batch: its arguments, the first the batch.
            data = json.loads(message.body).get("data") or [[]]
            for event in data[0] if isinstance(data[0], list) else []:
                sent = datetime.fromisoformat(event["timestamp"]).timestamp()
                histogram[int((now - sent) * 1000)] += 1
        message.ack()

    with Connection(BROKER) as connection, Consumer(connection, [queue], on_message=on_message):
        results.put("ready")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=0.2)
    results.put(dict(histogram))


class EmittedTap:
    """``tap_emitted`` in a process of its own: the consumer's share of the latency
    (producer → RabbitMQ → consumer → event log → Socket.IO's exchange), beside the
    clients' whole latency.  The rest is the web instance's and the clients' share."""

    def __init__(self, channel: str):
        context = multiprocessing.get_context("spawn")
        self.window, self.stop = context.Event(), context.Event()
        self.results = context.Queue()
        self.process = context.Process(
            target=tap_emitted, args=(channel, self.window, self.stop, self.results), daemon=True
        )
        self.process.start()
        if self.results.get(timeout=60) != "ready":
            raise RuntimeError("the tap did not start")

    def open(self) -> None:
        self.window.set()

    def close(self) -> dict:
        """The latency percentiles seen while the window was open."""
        self.window.clear()
        self.stop.set()
        histogram = Counter({int(ms): n for ms, n in self.results.get(timeout=30).items()})
        self.process.join(10)
        return percentiles(histogram)


def delivery_age_buckets(urls: list[str]) -> Counter[float]:
    """The web instances' ``pulseboard_stream_delivery_age_seconds`` buckets, summed:
    how many events each round had sent by then, by upper bound in seconds."""
    buckets: Counter[float] = Counter()
    for url in urls:
        text = requests.get(f"{url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "pulseboard_stream_delivery_age_seconds_bucket":
                    buckets[float(sample.labels["le"])] += sample.value
    return buckets


def bucket_percentiles(before: Counter[float], after: Counter[float]) -> dict:
    """Percentiles in ms from two scrapes of cumulative buckets: each the upper bound
    of the bucket it falls in (a bound, not a measurement)."""
    counts = {bound: after[bound] - before[bound] for bound in after}
    total = counts.get(float("inf"), 0)
    if not total:
        return {}
    figures = {}
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        bound = min(b for b, n in counts.items() if n >= fraction * total)
        figures[name] = "inf" if bound == float("inf") else round(bound * 1000)
    return figures


class Profile:
    """py-spy sampling one process into ``out`` as folded stacks until ``stop()``.

    py-spy pauses the process for each sample: read while it runs
    (``--nonblocking``), a gevent worker's stacks came out torn, with a
    generator expression of a query-string check at 12% of a polling worker's
    samples.  The pauses slow the sampled run a little (a few % of its figure)."""

    def __init__(self, pid: int, out: Path, rate: int = 200):
        py_spy = Path(sys.executable).parent / "py-spy"
        self.process = subprocess.Popen(
            [str(py_spy), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.send_signal(2)  # SIGINT: py-spy writes what it sampled
        self.process.wait(timeout=60)


def heaviest(folded: Path, top: int = 30) -> tuple[list, list]:
    """Functions by their share of the samples: inclusive (anywhere on the stack) and
    self (on top of it), heaviest first."""
    inclusive, own, total = Counter(), Counter(), 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = [frame.split(" (")[0] for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    total = max(total, 1)
    return (
        [(frame, n / total) for frame, n in inclusive.most_common(top)],
        [(frame, n / total) for frame, n in own.most_common(top)],
    )


def print_heaviest(folded: Path, what: str) -> None:
    if not folded.exists():
        print(f"no profile in {folded} (py-spy needs ptrace: run as root)")
        return
    inclusive, own = heaviest(folded)
    print(f"heaviest functions {what} ({folded}), inclusive | self:")
    for (frame, share), (self_frame, self_share) in zip(inclusive, own, strict=False):
        print(f"{share:7.1%}  {frame[:60]:<60} {self_share:7.1%}  {self_frame[:60]}")


def percentiles(histogram: Counter[int]) -> dict:
    total = sum(histogram.values())
    if not total:
        return {}
    figures = {}
    wanted = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p999": 0.999}
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        for name, fraction in list(wanted.items()):
            if seen >= fraction * total:
                figures[name] = ms
                del wanted[name]
    figures["max"] = max(histogram)
    figures["mean"] = round(sum(ms * n for ms, n in histogram.items()) / total, 2)
    return figures


def report(result: dict, out: Path | None, echo: bool = True) -> None:
    """The whole result as one JSON line (unless ``echo`` is false), and into ``out``."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
    if echo:
        print(json.dumps(result))


def feed_main(arguments: list[str]) -> None:
    """``python bench/common.py feed --rate R --seconds S``: the Pulseboard producer."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    options = parser.parse_args(arguments)
    print(publish_paced(load_config(os.environ), options.rate, options.seconds))


if __name__ == "__main__" and sys.argv[1:2] == ["feed"]:
    feed_main(sys.argv[2:])
