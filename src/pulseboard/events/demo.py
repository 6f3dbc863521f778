"""The demo producer: streams that make the live pages worth watching.

* ``market.ticks``   a random walk of prices for a few symbols (key = symbol)
* ``system.metrics`` this host's CPU, memory and load, read from /proc every 2 s
* ``notices``        an occasional informational notice
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

from .producer import Producer

log = logging.getLogger(__name__)

METRICS_EVERY = 2.0
NOTICE_EVERY = 120.0
NOTICES = (
    ("info", "Market data", "Demo prices are simulated and reset when the producer restarts."),
    ("success", "All systems normal", "Every service is up and events are flowing."),
    ("warning", "Volatility ahead", "The demo market is about to get more lively."),
)


class MarketSimulator:
    """Geometric random walk per symbol, with a spread and a volume."""

    def __init__(self, symbols: list[str], rng: random.Random):
        self.rng = rng
        self.prices = {symbol: rng.uniform(20, 400) for symbol in symbols}
        self.opens = dict(self.prices)

    def tick(self) -> tuple[str, dict]:
        symbol = self.rng.choice(list(self.prices))
        price = self.prices[symbol] * (1 + self.rng.gauss(0, 0.0015))
        self.prices[symbol] = price
        change = (price - self.opens[symbol]) / self.opens[symbol] * 100
        return symbol, {
            "symbol": symbol,
            "price": round(price, 2),
            "bid": round(price * 0.9995, 2),
            "ask": round(price * 1.0005, 2),
            "change_pct": round(change, 3),
            "volume": self.rng.randint(1, 50) * 100,
        }


class HostMetrics:
    """CPU use since the last reading, memory and load average, from /proc."""

    def __init__(self, proc: Path = Path("/proc")):
        self.proc = proc
        self.last_cpu = self._cpu_times()

    def _cpu_times(self) -> tuple[int, int]:
        fields = [int(v) for v in (self.proc / "stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return idle, sum(fields)

    def read(self) -> dict:
        idle, total = self._cpu_times()
        last_idle, last_total = self.last_cpu
        self.last_cpu = (idle, total)
        busy = 1 - (idle - last_idle) / max(1, total - last_total)
        meminfo = {}
        for line in (self.proc / "meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            meminfo[name] = int(rest.split()[0])
        load1, load5, load15 = (float(v) for v in (self.proc / "loadavg").read_text().split()[:3])
        used = meminfo["MemTotal"] - meminfo.get("MemAvailable", meminfo["MemFree"])
        return {
            "cpu_pct": round(busy * 100, 1),
            "mem_used_mb": round(used / 1024),
            "mem_total_mb": round(meminfo["MemTotal"] / 1024),
            "mem_pct": round(used / meminfo["MemTotal"] * 100, 1),
            "load": [load1, load5, load15],
        }


def run_demo(
    producer: Producer,
    rate: float,
    duration: float = 0.0,
    symbols: list[str] | None = None,
    seed: int | None = None,
) -> int:
    """Publish until ``duration`` seconds pass (0: until interrupted); return the count."""
    rng = random.Random(seed)  # noqa: S311 - simulated prices, not secrets
    market = MarketSimulator(symbols or ["ACME", "GLOBX"], rng)
    metrics = HostMetrics()
    interval = 1.0 / rate if rate > 0 else None
    started = now = time.monotonic()
    next_tick, next_metrics, next_notice = now, now, now + 10
    sent = 0
    log.info("demo producer: %.1f ticks/s for %s", rate, f"{duration:g}s" if duration else "ever")
    try:
        while not duration or now - started < duration:
            if interval is not None and now >= next_tick:
                symbol, payload = market.tick()
                producer.publish("market.ticks", "tick", payload, key=symbol)
                sent += 1
                next_tick += interval
            if now >= next_metrics:
                producer.publish("system.metrics", "host", metrics.read(), key="host")
                sent += 1
                next_metrics += METRICS_EVERY
            if now >= next_notice:
                level, title, body = rng.choice(NOTICES)
                producer.publish(
                    "notices", "notice", {"level": level, "title": title, "body": body}
                )
                sent += 1
                next_notice += NOTICE_EVERY
            upcoming = min(next_metrics, next_notice, next_tick if interval else next_metrics)
            time.sleep(max(0.0, min(upcoming - time.monotonic(), 0.5)))
            now = time.monotonic()
    except KeyboardInterrupt:
        pass
    return sent
