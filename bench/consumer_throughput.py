"""Consumer throughput beside raw kombu, measured in the same run.

    python bench/consumer_throughput.py [--events 20000] [--runs 3] [--out FILE] [--profile FILE]

Needs RabbitMQ (BENCH_BROKER_URL, default amqp://guest:guest@127.0.0.1:5672//)
and a MySQL-compatible server (BENCH_MYSQL_SERVER, default
mysql+pymysql://root@127.0.0.1:3306).  Each run uses its own queues and its
own database, removed afterwards.  It measures, on the same broker:

* raw publish:   kombu publishes of the same envelopes (persistent, with confirms)
* raw consume:   a plain kombu consumer that acknowledges each message (the
                 baseline), and the same consumer acknowledging 500 at a time
                 with ``multiple`` (as Pulseboard's consumer does)
* consumer:      Pulseboard's consumer from a pre-filled queue to Socket.IO's
                 message queue, the event log on MySQL, counted by a listener
                 in a process of its own;
                 also the consumer thread's CPU time per event

and prints each rate, the consumer/raw-consume ratio, as a table and JSON
(``--out`` writes it).  ``--profile FILE`` samples this process with py-spy
while the first run's consumer works and prints its heaviest functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pymysql
from kombu import Connection, Consumer, Exchange, Producer, Queue

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from common import Profile, fanout_queue, print_heaviest
from flask_migrate import upgrade

from pulseboard import create_app
from pulseboard.events.consumer import EventConsumer
from pulseboard.events.emitter import Emitter
from pulseboard.events.envelope import new_envelope
from pulseboard.events.topology import Topology

BROKER = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
MYSQL = os.environ.get("BENCH_MYSQL_SERVER", "mysql+pymysql://root@127.0.0.1:3306")


def bodies(count: int, topics: int = 1) -> list[tuple[str, bytes]]:
    """``count`` tick events, dealt in turn to ``topics`` topics (market.ticks, then
    market.ticks-1 …): each batch then holds every topic, as a busy log's do."""
    template = new_envelope("market.ticks", "tick", {"symbol": "ACME", "price": 101.25}, "ACME")
    names = ["market.ticks"] + [f"market.ticks-{n}" for n in range(1, topics)]
    messages = []
    for n in range(count):
        event = replace(template, id=f"bench-{n:07d}", topic=names[n % topics])
        messages.append((event.topic, event.to_json()))
    return messages


def fill(queue_exchange: Exchange, messages, confirm: bool) -> float:
    """Publish ``messages``; return the publish rate (messages/s)."""
    options = {"confirm_publish": True} if confirm else {}
    with Connection(BROKER, transport_options=options) as connection:
        producer = Producer(connection)
        started = time.perf_counter()
        for routing_key, body in messages:
            producer.publish(
                body,
                exchange=queue_exchange,
                routing_key=routing_key,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
            )
        return len(messages) / (time.perf_counter() - started)


def raw_consume(queue: Queue, count: int, ack_every: int = 1) -> float:
    """Consume ``count`` messages, acknowledging each (or every ``ack_every``-th with
    ``multiple``); return messages/s."""
    received = 0

    def on_message(message):
        nonlocal received
        received += 1
        if ack_every == 1:
            message.ack()
        elif received % ack_every == 0 or received == count:
            message.ack(multiple=True)

    with (
        Connection(BROKER) as connection,
        Consumer(connection, [queue], on_message=on_message, prefetch_count=1000),
    ):
        connection.drain_events(timeout=5)
        started = time.perf_counter()
        first = received
        while received < count:
            connection.drain_events(timeout=5)
        return (received - first) / (time.perf_counter() - started)


def listen(channel: str, counter, ready, stop) -> None:
    """Count the events reaching Socket.IO's fanout exchange (what web instances get)."""
    queue = fanout_queue(channel, "bench-listener")

    def on_message(message):
        # Counted without decoding: each stored event carries one "seq" (payloads have none).
        body = message.body
        with counter.get_lock():
            counter.value += body.count('"seq":' if isinstance(body, str) else b'"seq":')
        message.ack()

    with (
        Connection(BROKER) as connection,
        Consumer(connection, [queue], on_message=on_message),
    ):
        ready.set()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=0.2)


class Listener:
    """``listen`` in a process of its own, so that counting takes nothing from the
    consumer's process (its GIL) but a core's share, as a web instance would."""

    def __init__(self, channel: str):
        context = multiprocessing.get_context("spawn")
        self.counter = context.Value("q", 0)
        self.ready = context.Event()
        self.stop = context.Event()
        self.process = context.Process(
            target=listen, args=(channel, self.counter, self.ready, self.stop), daemon=True
        )

    @property
    def events(self) -> int:
        return self.counter.value

    def start(self) -> None:
        self.process.start()
        if not self.ready.wait(60):
            raise RuntimeError("the listener did not start")

    def close(self) -> None:
        self.stop.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def make_database() -> tuple[str, str]:
    name = f"pb_bench_{secrets.token_hex(4)}"
    connection = pymysql.connect(host="127.0.0.1", user="root")
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    connection.close()
    return name, f"{MYSQL}/{name}?charset=utf8mb4"


def drop_database(name: str) -> None:
    connection = pymysql.connect(host="127.0.0.1", user="root")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
    connection.close()


class TimedConsumer(EventConsumer):
    """The product's consumer, keeping its thread's CPU time."""

    cpu_seconds = 0.0

    def run(self) -> None:
        started = time.thread_time()
        try:
            super().run()
        finally:
            self.cpu_seconds = time.thread_time() - started


def run_once(count: int, topics: int = 1, profile: Path | None = None) -> dict:
    slug = f"bench-{secrets.token_hex(3)}"
    database, url = make_database()
    app = create_app(
        {"APP_ENV": "test", "APP_SLUG": slug, "DATABASE_URL": url, "BROKER_URL": BROKER}
    )
    with app.app_context():
        upgrade()
    topology = Topology.from_config(app.config)
    raw_queue = Queue(
        f"{slug}.raw",
        Exchange(f"{slug}.raw", type="topic", durable=True),
        routing_key="#",
        durable=True,
    )
    messages = bodies(count, topics)
    try:
        with Connection(BROKER) as connection:
            topology.declare(connection.default_channel)
            raw_queue.bind(connection.default_channel).declare()
        publish_rate = fill(raw_queue.exchange, messages, confirm=True)
        consume_rate = raw_consume(raw_queue, count)
        fill(raw_queue.exchange, messages, confirm=False)
        consume_multiple_rate = raw_consume(raw_queue, count, ack_every=500)

        fill(topology.exchange, messages, confirm=False)
        listener = Listener(topology.socketio_channel)
        listener.start()
        emitter = Emitter.over_message_queue(BROKER, topology.socketio_channel)
        consumer = TimedConsumer.from_app(app, emitter)
        thread = threading.Thread(target=consumer.run, daemon=True)
        profiler = Profile(os.getpid(), profile) if profile else None
        started = time.perf_counter()
        thread.start()
        try:
            while listener.events < count:
                time.sleep(0.005)
                if time.perf_counter() - started > 300:
                    raise RuntimeError(f"only {listener.events} of {count} events emitted")
            elapsed = time.perf_counter() - started
        finally:
            if profiler is not None:
                profiler.stop()
        consumer.stop()
        thread.join(10)
        listener.close()
        consumer_rate = count / elapsed
        return {
            "events": count,
            "topics": topics,
            "raw_publish_confirmed_per_s": round(publish_rate),
            "raw_consume_ack_per_s": round(consume_rate),
            "raw_consume_ack_multiple_per_s": round(consume_multiple_rate),
            "consumer_per_s": round(consumer_rate),
            "consumer_vs_raw_consume": round(consumer_rate / consume_rate, 2),
            "consumer_vs_raw_consume_multiple": round(consumer_rate / consume_multiple_rate, 2),
            # The whole thread, its idle polls at the start and the stop included.
            "consumer_cpu_us_per_event": round(consumer.cpu_seconds / count * 1e6, 1),
            "batches": consumer.stats["batches"],
            "mean_batch": round(consumer.stats["stored"] / max(1, consumer.stats["batches"]), 1),
        }
    finally:
        with Connection(BROKER) as connection:
            channel = connection.default_channel
            for name in (topology.queue.name, topology.dead_letter_queue.name, raw_queue.name):
                channel.queue_delete(name)
            for name in (
                topology.exchange.name,
                topology.dead_letter_exchange.name,
                raw_queue.exchange.name,
                topology.socketio_channel,  # Socket.IO's fanout exchange, named after it
            ):
                channel.exchange_delete(name)
        drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--topics", type=int, default=1, help="events dealt to this many topics")
    parser.add_argument("--out", type=Path, help="write the runs and medians here as JSON")
    parser.add_argument("--profile", type=Path, help="py-spy folded stacks of the first run")
    args = parser.parse_args()
    runs = [
        run_once(args.events, args.topics, args.profile if number == 0 else None)
        for number in range(args.runs)
    ]
    keys = [
        "raw_publish_confirmed_per_s",
        "raw_consume_ack_per_s",
        "raw_consume_ack_multiple_per_s",
        "consumer_per_s",
        "consumer_vs_raw_consume",
        "consumer_vs_raw_consume_multiple",
        "consumer_cpu_us_per_event",
        "mean_batch",
    ]
    summary = {key: statistics.median(run[key] for run in runs) for key in keys}
    title = f"measure (median of {args.runs} runs, {args.events} events on {args.topics} topics)"
    print(f"{title:<48} value")
    for key in keys:
        print(f"{key:<48} {summary[key]}")
    document = {"runs": runs, "median": summary}
    if args.out:
        args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps(document))
    if args.profile:
        print_heaviest(args.profile, "of this process while the consumer worked")


if __name__ == "__main__":
    main()
