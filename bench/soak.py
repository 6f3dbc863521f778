"""A soak of the delivery guarantee: every page gets every event, once, in order, for as
long as the stream runs, and the web instance's and the consumer's memory stay flat.

    python bench/soak.py [--minutes 10] [--sockets 500] [--polling 50] [--rate 50]
                         [--churn 20] [--instances 1] [--out bench/results/soak.json]

Starts Pulseboard (see bench/common.py: web instance(s), the consumer, its own
database and RabbitMQ names), then opens ``--sockets`` Node.js pages
(``bench/node/soak.js``: they do what static/js/stream.js does), ``--polling``
of them on long-polling and one in four on two topics.  A producer publishes
``--rate`` events a second with publisher confirms, one in ten on the second
topic, for ``--minutes``; meanwhile ``--churn`` pages a minute leave for a few
seconds and come back, resubscribing with their positions.  Every 30 s it
prints the RSS of the web worker(s) and of the consumer beside the pages' totals.

At the end it counts at every page against the event log: the events on its
topics stored since the pages first subscribed, received, missing, duplicated,
out of order (and, where events carry ``prev``, holes seen on arrival).  It
prints the pages, a summary per kind of page and the RSS figures, writes the
whole result as JSON to ``--out``, and exits 1 if any page missed, repeated or
reordered an event (or the log lacks a confirmed one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from common import NODE_DIR, ROOT, TOPIC, prepare, pulseboard, report, rss_kb
from tests.faults import SteadyProducer
from tests.pipeline import EventLog, wait_for
from tests.servers import stop

from pulseboard.config import load_config

SIDE_TOPIC = "system.metrics"
SIDE_EVERY = 10  # one event in ten goes to the side topic
TWO_TOPICS_EVERY = 4  # one page in four holds both topics
SAMPLE_SECONDS = 30
OPEN_TIMEOUT = 180  # seconds for every page to subscribe (the pages give up at 120)
STORED_TIMEOUT = 90  # seconds for the consumer to store the last confirmed events
DELIVERY_WAIT = 60  # seconds for the last events to reach every page


def page_plan(urls: list[str], sockets: int, polling: int) -> list[dict]:
    """The pages, spread over the instances; long-polling and two topics spread evenly."""
    on_polling = {round(n * sockets / polling) for n in range(polling)} if polling else set()
    return [
        {
            "url": urls[index % len(urls)],
            "transport": "polling" if index in on_polling else "websocket",
            "topics": [TOPIC, SIDE_TOPIC] if index % TWO_TOPICS_EVERY == 0 else [TOPIC],
        }
        for index in range(sockets)
    ]


class Pages:
    """The Node.js process holding every page; one JSON line out per command in."""

    def __init__(self, cookie: str, plan: list[dict], churn: float):
        self.process = subprocess.Popen(
            ["node", "soak.js", json.dumps({"cookie": cookie, "churn": churn, "pages": plan})],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")  # the process ended

    def answer(self, timeout: float) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the pages did not answer within {timeout:.0f} s") from None
        if not line:
            raise RuntimeError(f"the pages' process ended (exit {self.process.wait(5)})")
        return json.loads(line)

    def ask(self, command: str, timeout: float = 30, **fields) -> dict:
        self.process.stdin.write(json.dumps({"command": command, **fields}) + "\n")
        self.process.stdin.flush()
        return self.answer(timeout)

    def close(self) -> None:
        stop(self.process)


class Samples:
    """RSS of the web worker(s) and the consumer, beside the pages' totals, as a table."""

    def __init__(self, server, pages: Pages, log: EventLog, producer: SteadyProducer):
        self.server, self.pages, self.log, self.producer = server, pages, log, producer
        self.rows: list[dict] = []
        self.started = time.monotonic()
        webs = "".join(f"{f'web{n} MB':>9}" for n in range(1, len(server.web_pids) + 1))
        self.head = (
            f"{'time':>6}{webs}{'cons MB':>9}{'published':>11}{'stored':>9}{'subscr':>8}"
            f"{'away':>6}{'received':>12}{'dup':>5}{'ooo':>5}{'dropped':>9}"
        )

    def take(self) -> dict:
        totals = self.pages.ask("status")
        row = {
            "seconds": round(time.monotonic() - self.started),
            "web_rss_mb": [round(rss_kb(pid) / 1024, 1) for pid in self.server.web_pids],
            "consumer_rss_mb": round(rss_kb(self.server.consumer_pid) / 1024, 1),
            "published": len(self.producer.confirmed),
            "stored": self.log.count(),
            **{name: totals[name] for name in ("subscribed", "away", "received")},
            **{name: totals[name] for name in ("duplicated", "out_of_order", "dropped")},
        }
        if not self.rows:
            print(self.head, flush=True)
        self.rows.append(row)
        print(self.line(row), flush=True)
        return row

    def line(self, row: dict) -> str:
        minutes, seconds = divmod(row["seconds"], 60)
        webs = "".join(f"{mb:>9}" for mb in row["web_rss_mb"])
        return (
            f"{minutes:>3}:{seconds:02}{webs}{row['consumer_rss_mb']:>9}{row['published']:>11,}"
            f"{row['stored']:>9,}{row['subscribed']:>8}{row['away']:>6}{row['received']:>12,}"
            f"{row['duplicated']:>5}{row['out_of_order']:>5}{row['dropped']:>9}"
        )

    def memory(self) -> dict:
        """First, last and largest RSS of each process over the run, in MB."""
        series = {"consumer": [row["consumer_rss_mb"] for row in self.rows]}
        for n in range(len(self.server.web_pids)):
            series[f"web{n + 1}"] = [row["web_rss_mb"][n] for row in self.rows]
        return {
            name: {"first": values[0], "last": values[-1], "max": max(values)}
            for name, values in series.items()
        }


def stream_for(samples: Samples, seconds: float) -> None:
    """Sample every SAMPLE_SECONDS while the producer runs, and once more when it ends."""
    producer = samples.producer
    producer.start()
    samples.take()
    deadline = time.monotonic() + seconds + 120
    while producer.is_alive() and time.monotonic() < deadline:
        producer.join(SAMPLE_SECONDS)
        samples.take()
    if producer.is_alive() or producer.error is not None:
        raise RuntimeError(f"the producer did not finish: {producer.error or 'still running'}")


def expected_since(log: EventLog, start: int) -> dict[str, list[int]]:
    """The log's seqs per topic after ``start``: what every page must have received."""
    expected: dict[str, list[int]] = defaultdict(list)
    for seq, _, topic in log.rows():
        if seq > start:
            expected[topic].append(seq)
    return dict(expected)


def stored_since(log: EventLog, start: int) -> int:
    return sum(map(len, expected_since(log, start).values()))


def print_pages(counts: list[dict]) -> None:
    print(
        f"\n{'page':>5} {'instance':<22} {'transport':<10} {'topics':>6} {'expected':>9}"
        f" {'received':>9} {'missing':>8} {'dup':>5} {'ooo':>5} {'holes':>6} {'connects':>9}"
        f" {'churned':>8}"
    )
    for c in counts:
        print(
            f"{c['page']:>5} {c['url']:<22} {c['transport']:<10} {len(c['topics']):>6}"
            f" {c['expected']:>9,} {c['received']:>9,} {c['missing']:>8,} {c['duplicated']:>5}"
            f" {c['out_of_order']:>5} {c['holes']:>6} {c['connects']:>9} {c['churned']:>8}"
        )


def by_kind(counts: list[dict]) -> list[dict]:
    """The pages summed per instance, transport and number of topics."""
    kinds: dict[tuple, dict] = {}
    for c in counts:
        key = (c["url"], c["transport"], len(c["topics"]))
        kind = kinds.setdefault(
            key, {"url": key[0], "transport": key[1], "topics": key[2], "pages": 0}
        )
        kind["pages"] += 1
        kind["with_loss"] = kind.get("with_loss", 0) + (c["missing"] > 0)
        for name in ("expected", "received", "missing", "unexpected", "duplicated"):
            kind[name] = kind.get(name, 0) + c[name]
        for name in ("out_of_order", "holes", "connects", "dropped", "churned"):
            kind[name] = kind.get(name, 0) + c[name]
    return list(kinds.values())


def print_summary(kinds: list[dict], memory: dict) -> None:
    print(
        f"\n{'instance':<22} {'transport':<10} {'topics':>6} {'pages':>6} {'with loss':>10}"
        f" {'expected':>11} {'received':>11} {'missing':>8} {'dup':>5} {'ooo':>5}"
        f" {'holes':>6} {'churned':>8} {'dropped':>8}"
    )
    for k in kinds:
        print(
            f"{k['url']:<22} {k['transport']:<10} {k['topics']:>6} {k['pages']:>6}"
            f" {k['with_loss']:>10} {k['expected']:>11,} {k['received']:>11,} {k['missing']:>8,}"
            f" {k['duplicated']:>5} {k['out_of_order']:>5} {k['holes']:>6} {k['churned']:>8}"
            f" {k['dropped']:>8}"
        )
    print(f"\n{'RSS MB':<10}{'first':>8}{'last':>8}{'max':>8}")
    for name, figures in memory.items():
        print(f"{name:<10}{figures['first']:>8}{figures['last']:>8}{figures['max']:>8}")


def faulty(count: dict) -> bool:
    return any(count[name] for name in ("missing", "unexpected", "duplicated", "out_of_order"))


def soak(arguments: argparse.Namespace) -> dict:
    commit = git_commit()  # the code the instances start with
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(pulseboard(arguments.instances))
        print(f"Pulseboard at {', '.join(server.urls)}; logs in {server.log_dir}", flush=True)
        log = EventLog(server.env["DATABASE_URL"])
        stack.callback(log.close)
        plan = page_plan(server.urls, arguments.sockets, arguments.polling)
        pages = Pages(server.cookie, plan, arguments.churn)
        stack.callback(pages.close)
        opened = pages.answer(OPEN_TIMEOUT)
        if opened["errors"]:
            raise RuntimeError(f"{opened['errors']} of {len(plan)} pages did not subscribe")
        # Every page has subscribed: from here on, each must receive everything.
        start = max((seq for seq, *_ in log.rows()), default=0)
        rate, seconds = arguments.rate, arguments.minutes * 60
        producer = SteadyProducer(
            load_config(server.env), round(rate * seconds), rate, TOPIC, SIDE_TOPIC, SIDE_EVERY
        )
        samples = Samples(server, pages, log, producer)
        stream_for(samples, seconds)
        settled = pages.ask("settle", timeout=120)
        confirmed = len(producer.confirmed)
        with contextlib.suppress(AssertionError):  # a shortfall is reported below
            wait_for(lambda: stored_since(log, start) >= confirmed, STORED_TIMEOUT, interval=1)
        samples.take()  # the last sample: the stream has ended, every page is back
        expected = expected_since(log, start)
        stored = stored_since(log, start)
        final = pages.ask(
            "count", timeout=DELIVERY_WAIT + 60, expected=expected, wait=DELIVERY_WAIT
        )
        memory = samples.memory()
    counts = final["pages"]
    return {
        "benchmark": "soak",
        "minutes": arguments.minutes,
        "sockets": arguments.sockets,
        "polling": arguments.polling,
        "rate": rate,
        "churn_per_minute": arguments.churn,
        "instances": arguments.instances,
        "commit": commit,
        "published_confirmed": confirmed,
        "stored": stored,
        "pages_with_loss": sum(c["missing"] > 0 for c in counts),
        "pages_with_duplicates": sum(c["duplicated"] > 0 for c in counts),
        "pages_out_of_order": sum(c["out_of_order"] > 0 for c in counts),
        "pages_faulty": sum(faulty(c) for c in counts),
        # Holes seen on arrival (an event whose `prev` the page never had), filled or not.
        "holes": final["totals"]["holes"],
        "churned": final["totals"]["churned"],
        "dropped_by_server": final["totals"]["dropped"],
        "disconnect_reasons": final["totals"]["disconnect_reasons"],
        "subscribe_errors": final["totals"]["subscribe_error_messages"],
        "settled": {name: settled[name] for name in ("subscribed", "away")},
        "rss_mb": memory,
        "samples": samples.rows,
        "kinds": by_kind(counts),
        "pages": counts,
    }


def git_commit() -> str:
    """HEAD, marked when the product's code differs from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "src", "static"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head}+modified" if changed else head


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--polling", type=int, default=50, help="of the sockets, on long-polling")
    parser.add_argument("--rate", type=float, default=50, help="events a second")
    parser.add_argument("--churn", type=float, default=20, help="pages leaving a minute")
    parser.add_argument("--instances", type=int, default=1, help="Pulseboard web instances")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    arguments = parser.parse_args()
    if not 0 <= arguments.polling <= arguments.sockets:
        parser.error("--polling must be between 0 and --sockets")
    prepare()
    # Ctrl-C and a plain kill unwind the same way: every process started here is stopped
    # (SIGINT too when started in the background, where it comes ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = soak(arguments)
    except KeyboardInterrupt:
        print("interrupted: every process started for the soak is stopped", file=sys.stderr)
        return 130
    print_pages(result["pages"])
    print_summary(result["kinds"], result["rss_mb"])
    print(
        f"\npublished (confirmed) {result['published_confirmed']:,}, stored {result['stored']:,};"
        f" pages with loss {result['pages_with_loss']}, with duplicates"
        f" {result['pages_with_duplicates']}, out of order {result['pages_out_of_order']}"
        f" (of {arguments.sockets}); {result['churned']} churned,"
        f" {result['dropped_by_server']} dropped by the server {result['disconnect_reasons']}"
    )
    # Every page's counts make a long line: the file has them, the tables above say them.
    report(result, arguments.out, echo=False)
    print(f"result: {arguments.out}")
    lost_in_log = result["stored"] < result["published_confirmed"]
    return 1 if result["pages_faulty"] or lost_in_log else 0


if __name__ == "__main__":
    sys.exit(main())
