"""Plots for docs/BENCHMARKS.md from the JSON that bench/delivery.py and connections.py write.

    pip install --require-hashes -r bench/requirements.txt     # matplotlib, once
    python bench/plot.py bench/results/delivery-500.json bench/results/connections.json

Writes docs/img/latency-vs-load.png (p50 and p99 latency against events
delivered per second, one line per server) and docs/img/memory-per-connection.png.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
COLOURS = {"pulseboard": "#4f46e5", "flask-socketio": "#d97706", "node": "#059669"}


def latency_vs_load(rows: list[dict], path: Path) -> None:
    by_server: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_server[row["server"]].append(row)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for server, points in by_server.items():
        points.sort(key=lambda row: row["rate"])
        x = [row["delivered_per_s"] / 1000 for row in points]
        colour = COLOURS.get(server)
        axes.plot(
            x,
            [row["latency_ms"]["p50"] for row in points],
            "o--",
            color=colour,
            label=f"{server} p50",
        )
        axes.plot(
            x,
            [row["latency_ms"]["p99"] for row in points],
            "s-",
            color=colour,
            label=f"{server} p99",
        )
    clients = rows[0]["clients"]
    axes.set_title(f"Producer-to-client latency against load ({clients} clients, one topic)")
    axes.set_xlabel("events delivered to clients per second (thousands)")
    axes.set_ylabel("latency (ms, log scale)")
    axes.set_yscale("log")
    axes.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def memory_per_connection(rows: list[dict], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(6, 3.5))
    names = [row["server"] for row in rows]
    values = [row["kb_per_connection"] for row in rows]
    bars = axes.bar(names, values, color=[COLOURS.get(name, "grey") for name in names])
    axes.bar_label(bars, fmt="%.0f KB")
    axes.set_ylim(0, max(values) * 1.15)  # room for the tallest bar's label
    axes.set_title(f"Server memory per idle WebSocket ({rows[0]['connections']} connections)")
    axes.set_ylabel("KB of RSS per connection")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(paths: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in paths:
        result = json.loads(Path(name).read_text())
        if result["benchmark"] == "delivery":
            latency_vs_load(result["rows"], OUT / "latency-vs-load.png")
        elif result["benchmark"] == "connections":
            memory_per_connection(result["rows"], OUT / "memory-per-connection.png")
    print(f"plots in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
