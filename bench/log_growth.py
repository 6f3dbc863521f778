"""Reading and pruning the event log as it grows: 1, 10 and 30 million rows on MariaDB.

    python bench/log_growth.py [--sizes 1,10,30] [--repeat 5] [--keep] \
        [--out bench/results/log-growth.json]

It starts a MariaDB server of its own on a free loopback port (its data in a
temporary folder, removed at the end unless ``--keep``), migrates an empty
database with ``pulseboard db upgrade``, and fills the event log in steps (in
millions of rows) with ``INSERT ... SELECT`` from MariaDB's sequence engine:
40 topics of skewed volume (the busiest about 28 % of the log, the quietest
under 1 %), four types, 200 keys, payloads of 100-300 bytes, ``seq`` and
``stored_at`` rising together at 100 events/s as the consumer writes them.

At each size it times, with the product's own functions and the median of
``--repeat`` runs:

* replay: ``store.events_since`` for 1,000 events from the middle of the log,
  on the busiest topic, the quietest, three topics at once, and two topics of
  one event in 100,000 (a stream replay);
* history: what ``GET /api/v1/events`` runs (``latest_seq``, ``read_page``,
  ``oldest_seq``) for the newest page of a topic, filtered by type and key, by
  type only, by a one-hour time range and from a seq;
* retention: ``store.prune_slices`` (what ``store.prune`` and the consumer run)
  of the oldest 50,000 rows by age, and its longest slice.

It prints EXPLAIN for every statement each one ran, and a table per size with
the ratio to the first size.  At the last size it stores batches with
``store.store_batch`` (the consumer's path) at 1,000 events/s, alone and while
retention deletes a backlog of ``--backlog`` rows, and prints their p50/p99.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pymysql
from sqlalchemy import event, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.servers import PrivateMariaDB, base_env, run_cli  # noqa: E402

from pulseboard import create_app  # noqa: E402
from pulseboard.events import history, store  # noqa: E402
from pulseboard.events.envelope import new_envelope  # noqa: E402
from pulseboard.events.history import HistoryQuery  # noqa: E402
from pulseboard.extensions import db  # noqa: E402
from pulseboard.models import Event  # noqa: E402
from pulseboard.stream.state import TopicFilter  # noqa: E402

AREAS = ("market", "orders", "fleet", "sensors", "billing")
THINGS = ("ticks", "trades", "quotes", "alerts", "status", "created", "updated", "metrics")
TOPICS = [f"{area}.{thing}" for area in AREAS for thing in THINGS]
BUSY, MIDDLING, QUIET = TOPICS[0], TOPICS[10], TOPICS[-1]
# Two topics that see an event in 100,000 (alerts, say): too few to fill a replay page.
RARE = ("billing.refunds", "fleet.recalls")
TYPES = ("tick", "trade", "quote", "status")
# 100 events/s: 30 million rows are three and a half days of log.
STEP_MICROSECONDS = 10_000
FILL_CHUNK = 1_000_000
REPLAY_LIMIT = 1000
RETENTION_SLICE = 50_000

# Row ``n`` of the fill, as SQL over the sequence engine's column ``seq``.  CRC32 of
# a salted n stands in for randomness, so every run writes the same log.
FILL_SQL = """
INSERT INTO events (event_id, topic, type, `key`, timestamp, payload, stored_at)
SELECT CONCAT('evt-', LPAD(seq, 12, '0')),
       CASE seq % 100000 WHEN 50 THEN '{rare[0]}' WHEN 50050 THEN '{rare[1]}' ELSE
           ELT(1 + FLOOR({topics} * POW((CRC32(CONCAT('t', seq)) % 1000000) / 1000000, 3)),
               {topic_names}) END,
       ELT(1 + CRC32(CONCAT('y', seq)) % 4, {type_names}),
       IF(seq % 10 = 0, NULL, CONCAT('k', LPAD(CRC32(CONCAT('k', seq)) % 200, 3, '0'))),
       TIMESTAMPADD(MICROSECOND, seq * {step} + 50000 - CRC32(CONCAT('l', seq)) % 50000,
                    '{base}' - INTERVAL 50000 MICROSECOND),
       CONCAT('{{"value":', CRC32(CONCAT('v', seq)) % 100000, ',"unit":"ms","note":"',
              LEFT(REPEAT(MD5(seq), 8), 60 + CRC32(CONCAT('p', seq)) % 200), '"}}'),
       TIMESTAMPADD(MICROSECOND, seq * {step}, '{base}')
FROM seq_{first}_to_{last}
"""


def quoted(names) -> str:
    return ", ".join(f"'{name}'" for name in names)


class Statements:
    """The statements the product sends while ``capturing``, for EXPLAIN."""

    def __init__(self, engine):
        self.seen: dict[str, object] = {}
        self.capturing = False
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        if self.capturing and not executemany and statement.lstrip()[:6] in ("SELECT", "DELETE"):
            self.seen.setdefault(statement, parameters)

    @contextlib.contextmanager
    def capture(self):
        self.seen = {}
        self.capturing = True
        try:
            yield
        finally:
            self.capturing = False

    def explain(self, session) -> list[dict]:
        plans = []
        for statement, parameters in self.seen.items():
            result = session.connection().exec_driver_sql("EXPLAIN " + statement, parameters)
            rows = [dict(row._mapping) for row in result]
            plans.append(
                {
                    "sql": " ".join(statement.split())[:200],
                    "plan": [
                        {k: row.get(k) for k in ("table", "type", "key", "rows", "Extra")}
                        for row in rows
                    ],
                }
            )
        session.rollback()
        return plans


def timed(function, repeat: int) -> tuple[float, list[float]]:
    times = []
    for attempt in range(repeat):
        started = time.perf_counter()
        function(attempt)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), times


def history_request(session, query: HistoryQuery):
    """What GET /api/v1/events asks of the database for ``query``."""
    store.latest_seq(session)
    page = history.read_page(session, query)
    history.oldest_seq(session)
    session.rollback()
    return page


class LogBench:
    def __init__(self, url: str, repeat: int, retention_slice: int):
        self.url = url
        self.slice = retention_slice
        self.repeat = repeat
        self.app = create_app({"APP_ENV": "test", "DATABASE_URL": url, "BROKER_URL": "memory://"})
        self.base = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(days=5)
        self.filled = 0

    def connect(self):
        parts = self.url.split("@", 1)[1].split("?")[0]
        address, name = parts.split("/")
        host, port = address.split(":")
        return pymysql.connect(host=host, port=int(port), user="root", database=name)

    def fill_to(self, rows: int) -> float:
        """Add rows until the log holds ``rows`` (as many as retention removed, too)."""
        started = time.perf_counter()
        connection = self.connect()
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM events")
            missing = rows - cursor.fetchone()[0]
            cursor.execute("SET SESSION unique_checks = 0")
            while missing > 0:
                chunk = min(FILL_CHUNK, missing)
                cursor.execute(
                    FILL_SQL.format(
                        topics=len(TOPICS),
                        topic_names=quoted(TOPICS),
                        rare=RARE,
                        type_names=quoted(TYPES),
                        step=STEP_MICROSECONDS,
                        base=self.base.isoformat(sep=" "),
                        first=self.filled + 1,
                        last=self.filled + chunk,
                    )
                )
                connection.commit()
                self.filled += chunk
                missing -= chunk
            cursor.execute("ANALYZE TABLE events")
        return time.perf_counter() - started

    def measure(self, size: int) -> dict:
        """Every figure at this size, with the EXPLAIN of each statement it ran."""
        figures, plans = {}, {}
        with self.app.app_context():
            session = db.session
            statements = Statements(db.engine)
            low = history.oldest_seq(session)
            high = store.latest_seq(session)
            session.rollback()

            def position(attempt: int) -> int:
                # Each run from a different place, so it is not served by the last one's pages.
                return low + (high - low) * (10 + attempt) // 20

            def stored_at(seq: int) -> datetime:
                found = select(Event.stored_at).where(Event.seq >= seq).order_by(Event.seq)
                return session.scalar(found.limit(1))

            middle_times = [stored_at(position(attempt)) for attempt in range(self.repeat)]
            session.rollback()

            reads = {
                "replay busy topic": lambda a: store.events_since(
                    session, position(a), [BUSY], limit=REPLAY_LIMIT
                ),
                "replay quiet topic": lambda a: store.events_since(
                    session, position(a), [QUIET], limit=REPLAY_LIMIT
                ),
                "replay three topics": lambda a: store.events_since(
                    session, position(a), [BUSY, MIDDLING, QUIET], limit=REPLAY_LIMIT
                ),
                "replay two rare topics": lambda a: store.events_since(
                    session, position(a), list(RARE), limit=REPLAY_LIMIT
                ),
                "history newest page": lambda a: history_request(
                    session, HistoryQuery([MIDDLING], TopicFilter(), descending=True)
                ),
                "history type and key": lambda a: history_request(
                    session,
                    HistoryQuery(
                        [MIDDLING],
                        TopicFilter(types=frozenset({"trade"}), keys=frozenset({"k007"})),
                        descending=True,
                    ),
                ),
                "history type only": lambda a: history_request(
                    session,
                    HistoryQuery([MIDDLING], TopicFilter(types=frozenset({"status"}))),
                ),
                "history one hour": lambda a: history_request(
                    session,
                    HistoryQuery(
                        [MIDDLING],
                        TopicFilter(),
                        since=middle_times[a],
                        until=middle_times[a] + timedelta(hours=1),
                    ),
                ),
                "history after seq": lambda a: history_request(
                    session, HistoryQuery([MIDDLING], TopicFilter(), after=position(a))
                ),
            }
            for name, read in reads.items():
                with statements.capture():
                    read(0)
                session.rollback()
                plans[name] = statements.explain(session)
                figures[name], _ = timed(
                    lambda a, read=read: (read(a), session.rollback()), self.repeat
                )
            retention = self.prune_oldest(session, self.slice, statements)
            plans["retention"] = statements.explain(session)
            figures["retention"] = retention["ms"]
            figures["retention, longest slice"] = retention["longest_slice_ms"]
        return {"rows": size, "figures": figures, "plans": plans, "retention": retention}

    def prune_oldest(self, session, rows: int, statements=None) -> dict:
        """Prune the oldest ``rows`` by age, as ``store.prune`` does, timing each slice."""
        low = history.oldest_seq(session)
        cutoff = session.scalar(
            select(Event.stored_at).where(Event.seq >= low + rows).order_by(Event.seq).limit(1)
        )
        session.rollback()
        max_age = datetime.now(UTC) - cutoff
        slices = []
        started = time.perf_counter()
        with statements.capture() if statements else contextlib.nullcontext():
            pruning = store.prune_slices(session, max_age, None)
            while True:
                began = time.perf_counter()
                deleted = next(pruning, None)
                if deleted is None:
                    break
                slices.append(((time.perf_counter() - began) * 1000, deleted))
        return {
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "deleted": sum(deleted for _, deleted in slices),
            "slices": len(slices),
            "longest_slice_ms": round(max(ms for ms, _ in slices), 1),
        }

    def consumer_beside_retention(self, seconds: float, backlog: int) -> dict:
        """Batches of 100 stored as the consumer stores them, 10 a second, alone and while
        retention deletes ``backlog`` rows from another connection."""
        with self.app.app_context():
            alone = self.store_batches(seconds, None)
            pruning = {}
            beside = self.store_batches(seconds, lambda: pruning.update(self.prune_thread(backlog)))
        return {"alone": alone, "beside_retention": beside, "retention": pruning}

    def prune_thread(self, rows: int) -> dict:
        with self.app.app_context():
            pruned = self.prune_oldest(db.session, rows)
            db.session.remove()
        return pruned

    def store_batches(self, seconds: float, alongside) -> dict:
        worker = threading.Thread(target=alongside) if alongside else None
        if worker:
            worker.start()
            time.sleep(0.5)  # the first slice is under way
        latencies = []
        deadline = time.monotonic() + seconds
        tick = time.monotonic()
        while time.monotonic() < deadline or (worker and worker.is_alive()):
            # Ids go on from the fill's: each producer counts up, as the fill's do.
            batch = [
                replace(
                    new_envelope(TOPICS[n % len(TOPICS)], "tick", {"value": n}, key="k007"),
                    id=f"evt-{n:012d}",
                )
                for n in range(self.filled + 1, self.filled + 101)
            ]
            self.filled += 100
            started = time.perf_counter()
            store.store_batch(db.session, batch)
            db.session.commit()
            latencies.append((time.perf_counter() - started) * 1000)
            tick += 0.1
            time.sleep(max(0.0, tick - time.monotonic()))
        if worker:
            worker.join()
        db.session.remove()
        latencies.sort()
        return {
            "batches": len(latencies),
            "p50_ms": round(latencies[len(latencies) // 2], 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)], 1),
            "max_ms": round(latencies[-1], 1),
        }


def print_plans(plans: dict) -> None:
    for name, statements in plans.items():
        print(f"  EXPLAIN {name}:")
        for explained in statements:
            print(f"    {explained['sql'][:110]}")
            lines = [
                f"{row['table']} {row['type']} key={row['key']} rows={row['rows']}"
                f" {row['Extra'] or ''}"
                for row in explained["plan"]
            ]
            # One prev look per event of a page comes to many rows of the same plan.
            for line in dict.fromkeys(lines):
                times = lines.count(line)
                print(f"      {line}" + (f" (x{times})" if times > 1 else ""))


def print_table(steps: list[dict]) -> None:
    baseline = steps[0]
    print(f"\n{'figure (ms)':<26}" + "".join(f"{s['rows'] / 1e6:>9.0f} M  ratio" for s in steps))
    for name in baseline["figures"]:
        cells = ""
        for step in steps:
            value = step["figures"][name]
            ratio = value / baseline["figures"][name] if baseline["figures"][name] else 0
            cells += f"{value:>11.1f} {ratio:>5.2f}x"
        print(f"{name:<26}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,10,30", help="millions of rows, in order")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--consumer-seconds", type=float, default=15)
    parser.add_argument("--slice", type=int, default=RETENTION_SLICE, help="rows pruned")
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--buffer-pool-gib", type=int, default=4, help="InnoDB's buffer pool")
    parser.add_argument("--keep", action="store_true", help="keep the server's data folder")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "log-growth.json"))
    args = parser.parse_args()
    sizes = [int(float(size) * 1_000_000) for size in args.sizes.split(",")]
    # Stopped with a TERM, it still stops its server and removes the data.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(f"stopped by signal {number}"))

    folder = Path(tempfile.mkdtemp(prefix="pulseboard-log-growth-"))
    server = PrivateMariaDB(folder)
    server.start()
    admin = pymysql.connect(host="127.0.0.1", port=server.port, user="root")
    with admin, admin.cursor() as cursor:
        cursor.execute(
            f"SET GLOBAL innodb_buffer_pool_size = {args.buffer_pool_gib} * 1024*1024*1024"
        )
        cursor.execute("SET GLOBAL innodb_log_file_size = 1024*1024*1024")
        cursor.execute("SET GLOBAL innodb_flush_log_at_trx_commit = 2")
    url = server.create_database("pulseboard_bench_log")
    result = {
        "bench": "log-growth",
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average_before": list(os.getloadavg()),
        "buffer_pool_gib": args.buffer_pool_gib,
        "repeat": args.repeat,
        "retention_slice": args.slice,
        "steps": [],
    }
    try:
        migrated = run_cli("db", "upgrade", env=base_env(DATABASE_URL=url), timeout=300)
        if migrated.returncode != 0:
            raise SystemExit(migrated.stderr)
        bench = LogBench(url, args.repeat, args.slice)
        for size in sizes:
            fill = bench.fill_to(size)
            print(f"\n=== {size:,} rows (filled in {fill:.0f} s) ===", flush=True)
            step = bench.measure(size)
            step["fill_seconds"] = round(fill)
            print_plans(step["plans"])
            result["steps"].append(step)
            print_table(result["steps"])
        consumer = bench.consumer_beside_retention(args.consumer_seconds, args.backlog)
        result["consumer"] = consumer
        print(f"\nconsumer batches of 100 at {sizes[-1]:,} rows:", json.dumps(consumer))
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"server data kept in {folder}")
    Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
