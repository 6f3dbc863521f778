"""Producers with confirms: one at a time beside pipelined, for each way in, in one run.

    python bench/producer.py [--events 50000] [--baseline-events 5000] [--rounds 3] \
        [--out bench/results/producer.json] [--profile FILE]

Needs RabbitMQ (BENCH_BROKER_URL, default amqp://guest:guest@127.0.0.1:5672//).
Every event is persistent and published with publisher confirms to a topology of
the run's own (deleted afterwards); nothing consumes it.  Each producer runs
twice, on the same code: with ``PUBLISH_CONFIRM_WINDOW=1`` (each publish waits
for its confirm, as every producer did before pipelining: the baseline) and
with the default window.

* python: ``Producer.publish_envelopes`` on a batch of envelopes built beforehand;
  beside it, kombu's own ``confirm_publish`` one message at a time (the code the
  producer ran before), to show the baseline is that path.
* cli:    ``pulseboard events publish-batch FILE`` on a file of JSON lines.  The
  command's start-up (interpreter, app), measured in the same run on a one-line
  file, is subtracted; the rate with it is shown too.
* ingest: ``POST /api/v1/events`` with batches of ``--batch`` events to one
  gunicorn instance as deployed (one gevent worker), from ``--clients`` clients.

``--profile FILE`` adds a pipelined round of the Python API, not counted,
sampled by py-spy (folded stacks in FILE), and prints the heaviest functions.

The two alternate for ``--rounds`` rounds and the median of each is reported.
After each figure the queue must hold exactly the events the producer was told
were accepted (checked, then purged), and the rates are printed side by side
with their ratio, and written as JSON to ``--out`` with every round.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from common import Profile, print_heaviest
from kombu import Connection
from kombu import Producer as KombuProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.pipeline import declared_topology  # noqa: E402
from tests.servers import base_env, gunicorn, run_cli  # noqa: E402

from pulseboard.config import load_config  # noqa: E402
from pulseboard.events.envelope import new_envelope  # noqa: E402
from pulseboard.events.producer import Producer  # noqa: E402
from pulseboard.events.topology import Topology  # noqa: E402

BROKER = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
TOPIC = "market.ticks"
WINDOW = "PUBLISH_CONFIRM_WINDOW"
BASELINE, PIPELINED = "1", str(load_config(base_env())[WINDOW])


def event(n: int) -> dict:
    """A market tick of the size the demo producer sends."""
    return {
        "topic": TOPIC,
        "type": "tick",
        "key": "ACME",
        "payload": {"symbol": "ACME", "price": 101.25, "bid": 101.2, "ask": 101.3, "n": n},
    }


def envelopes(count: int) -> list:
    return [new_envelope(**event(n)) for n in range(count)]


def queued(topology: Topology) -> int:
    """Messages waiting in the run's queue; the queue is emptied."""
    with Connection(BROKER) as connection:
        bound = topology.queue.bind(connection.default_channel)
        count = bound.queue_declare(passive=True).message_count
        bound.purge()
        return count


def checked(topology: Topology, accepted: int, seconds: float) -> float:
    """Events/s, once the queue is seen to hold every accepted event."""
    found = queued(topology)
    if found != accepted:
        raise SystemExit(f"{accepted} events accepted but {found} queued")
    return accepted / seconds


# --- the Python API -----------------------------------------------------------------


def python_api(topology: Topology, env: dict, count: int, profile: Path | None = None) -> float:
    producer = Producer.from_config(load_config(env))
    try:
        producer.publish_envelopes(envelopes(1))  # connected and declared before the clock
        queued(topology)
        batch = envelopes(count)
        profiler = Profile(os.getpid(), profile, rate=500) if profile else None
        started = time.perf_counter()
        accepted = len(producer.publish_envelopes(batch))
        seconds = time.perf_counter() - started
        if profiler is not None:
            profiler.stop()
    finally:
        producer.close()
    return checked(topology, accepted, seconds)


def kombu_one_at_a_time(topology: Topology, count: int) -> float:
    """kombu's ``confirm_publish``: what ``Producer`` ran before pipelining."""
    batch = envelopes(count)
    with Connection(BROKER, transport_options={"confirm_publish": True}) as connection:
        producer = KombuProducer(connection)
        exchange = topology.exchange
        started = time.perf_counter()
        for envelope in batch:
            producer.publish(
                envelope.to_json(),
                exchange=exchange,
                routing_key=envelope.topic,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                message_id=envelope.id,
            )
        seconds = time.perf_counter() - started
    return checked(topology, count, seconds)


# --- the CLI ------------------------------------------------------------------------


def cli(topology: Topology, env: dict, count: int, folder: Path) -> dict:
    """``publish-batch`` on ``count`` lines: events/s without and with its start-up."""
    lines = folder / f"events-{count}.jsonl"
    lines.write_text("".join(json.dumps(event(n)) + "\n" for n in range(count)))
    one = folder / "one.jsonl"
    one.write_text(json.dumps(event(0)) + "\n")
    start_up = run_timed(env, one, 1)
    queued(topology)
    seconds = run_timed(env, lines, count)
    return {
        "events_per_s": checked(topology, count, max(seconds - start_up, 1e-6)),
        "with_start_up": count / seconds,
        "start_up_s": round(start_up, 3),
    }


def run_timed(env: dict, lines: Path, count: int) -> float:
    started = time.perf_counter()
    result = run_cli("events", "publish-batch", str(lines), env=env, timeout=600)
    seconds = time.perf_counter() - started
    if result.returncode != 0 or len(result.stdout.split()) != count:
        raise SystemExit(f"publish-batch failed: {result.stderr[-2000:]}")
    return seconds


def cli_one_process_per_event(env: dict, count: int = 3) -> float:
    """``pulseboard events publish``, one process per event: the CLI before publish-batch."""
    started = time.perf_counter()
    for n in range(count):
        result = run_cli(
            "events", "publish", "--topic", TOPIC, "--type", "tick",
            "--payload", json.dumps(event(n)["payload"]), "--key", "ACME", env=env,
        )  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(f"events publish failed: {result.stderr[-2000:]}")
    return count / (time.perf_counter() - started)


# --- the ingest API -----------------------------------------------------------------


def ingest_api(topology: Topology, env: dict, count: int, batch: int, clients: int) -> float:
    created = run_cli("tokens", "create", "--name", "bench", "--topics", "market.*", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps([event(n) for n in range(batch)])
    requests_due = iter(range(count // batch))
    lock = threading.Lock()
    accepted = [0]
    errors: list[str] = []
    with gunicorn({**env, "API_MAX_BATCH": str(batch)}) as url:

        def client() -> None:
            with requests.Session() as session:
                while True:
                    with lock:
                        if next(requests_due, None) is None:
                            return
                    response = session.post(
                        f"{url}/api/v1/events", data=body, headers=headers, timeout=120
                    )
                    if response.status_code != 202:
                        errors.append(f"{response.status_code} {response.text[:200]}")
                        return
                    with lock:
                        accepted[0] += len(response.json()["accepted"])

        warm = requests.post(f"{url}/api/v1/events", data=body, headers=headers, timeout=60)
        assert warm.status_code == 202, warm.text
        queued(topology)
        threads = [threading.Thread(target=client) for _ in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    if errors:
        raise SystemExit(f"ingest refused a batch: {errors[0]}")
    return checked(topology, accepted[0], seconds)


# --- the run --------------------------------------------------------------------------


@contextlib.contextmanager
def settings(folder: Path):
    """The run's environment (a topology of its own, a SQLite file for the API's tokens)."""
    topology = Topology(slug=f"bench-{secrets.token_hex(3)}")
    env = base_env(
        APP_SLUG=topology.slug,
        BROKER_URL=BROKER,
        DATABASE_URL=f"sqlite:///{folder / 'bench.db'}",
        TMPDIR=str(folder),
        API_RATE_LIMIT="1000000/minute",
    )
    assert run_cli("db", "upgrade", env=env).returncode == 0
    with declared_topology(BROKER, topology):
        yield topology, env


def measure(options) -> dict:
    counts = {BASELINE: options.baseline_events, PIPELINED: options.events}
    results: dict = {}
    with (
        tempfile.TemporaryDirectory(prefix="pb-bench-producer-") as tmp,
        settings(Path(tmp)) as (topology, env),
    ):
        folder = Path(tmp)
        figures = {
            "python": lambda env, count: python_api(topology, env, count),
            "cli": lambda env, count: cli(topology, env, count, folder),
            "ingest": lambda env, count: ingest_api(
                topology, env, count, options.batch, options.clients
            ),
        }
        for name, figure in figures.items():
            samples: dict[str, list] = {"one_at_a_time": [], "pipelined": []}
            # Rounds alternate the two, so a change in the machine's other load between
            # them cannot make the ratio; the median round of each is reported.
            for _ in range(options.rounds):
                for label, window in (("one_at_a_time", BASELINE), ("pipelined", PIPELINED)):
                    value = figure({**env, WINDOW: window}, counts[window])
                    samples[label].append(value)
                    print(f"  {name} {label}: {rate_of(value):,.0f} events/s", file=sys.stderr)
            results[name] = {label: median(values) for label, values in samples.items()}
            results[name]["rounds"] = samples
            results[name]["ratio"] = rate_of(results[name]["pipelined"]) / rate_of(
                results[name]["one_at_a_time"]
            )
        results["python"]["kombu_confirm_publish"] = kombu_one_at_a_time(
            topology, options.baseline_events
        )
        results["cli"]["one_process_per_event"] = cli_one_process_per_event(env)
        if options.profile:  # a round of its own: the sampling is not in the figures
            profiled = python_api(
                topology, {**env, WINDOW: PIPELINED}, options.events, options.profile
            )
            print(f"  python pipelined, profiled: {profiled:,.0f} events/s", file=sys.stderr)
        queued(topology)
    return results


def median(values: list):
    """The middle sample by rate (the lower middle of an even count)."""
    return sorted(values, key=rate_of)[(len(values) - 1) // 2]


def rate_of(value) -> float:
    return value["events_per_s"] if isinstance(value, dict) else value


def table(results: dict) -> str:
    rows = [f"{'producer':<8} {'one at a time/s':>16} {'pipelined/s':>12} {'ratio':>6}"]
    for name in ("python", "cli", "ingest"):
        figures = results[name]
        rows.append(
            f"{name:<8} {rate_of(figures['one_at_a_time']):>16,.0f} "
            f"{rate_of(figures['pipelined']):>12,.0f} {figures['ratio']:>5.1f}x"
        )
    python = results["python"]["kombu_confirm_publish"]
    cli = results["cli"]["pipelined"]
    single = results["cli"]["one_process_per_event"]
    rows.append(f"kombu confirm_publish, one at a time (the old Producer path): {python:,.0f}/s")
    rows.append(
        f"CLI pipelined with its {cli['start_up_s']} s start-up: {cli['with_start_up']:,.0f}/s"
    )
    rows.append(f"`events publish`, one process per event: {single:,.2f}/s")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per pipelined figure")
    parser.add_argument(
        "--baseline-events", type=int, default=5_000, help="events per one-at-a-time figure"
    )
    parser.add_argument("--batch", type=int, default=500, help="events per ingest request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent ingest clients")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per producer")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "producer.json")
    parser.add_argument("--profile", type=Path, help="py-spy folded stacks of the Python API")
    options = parser.parse_args()
    started, load = time.time(), os.getloadavg()
    results = measure(options)
    print(table(results))
    if options.profile:
        print_heaviest(options.profile, "while the Python API published")
    document = {
        "bench": "producer",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "load_average_before": load,
        "events": options.events,
        "baseline_events": options.baseline_events,
        "window": int(PIPELINED),
        "ingest_batch": options.batch,
        "ingest_clients": options.clients,
        "rounds": options.rounds,
        "results": rounded(results),
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(document, indent=1) + "\n")


def rounded(value):
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return round(value, 2) if isinstance(value, float) else value


if __name__ == "__main__":
    main()
