"""Events delivered to clients per second, and producer-to-client latency, under load.

    python bench/delivery.py [--clients 500] [--rates 100,300,600] [--seconds 10]
                             [--servers pulseboard,flask-socketio,node,node-batched]
                             [--instances 1]
                             [--transports websocket,polling,sse] [--stages]
                             [--out bench/results/delivery.json]

For each server (see bench/common.py) and each publish rate, connects
``--clients`` Node.js Socket.IO clients subscribed to one topic, publishes
``rate`` events a second, and measures over a ``--seconds`` window: events
received by all clients per second, latency percentiles (client receive time
minus the producer's timestamp), messages per client per second, and the CPU
of the web process(es) and of everything else on the path.  ``--transports``
repeats it over long-polling or, for Pulseboard, Server-Sent Events
(``GET /api/v1/stream``, one event per message), rows named ``server/transport``.  Prints a table,
then the whole result as one JSON line (also written to ``--out``).  ``--profile FILE``
samples Pulseboard's web worker with py-spy during each window (folded stacks).
``--stages`` also takes Pulseboard's latency where the consumer hands each event
to Socket.IO's exchange, from a process of its own bound to that exchange: what
is left of the clients' latency is the web instance's (and the clients') share.
It also reads the web instances' ``pulseboard_stream_delivery_age_seconds``
before and after the window: the age of each event when the round that sent it
ended, as the upper bounds of the histogram's buckets.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import (
    SERVERS,
    Clients,
    EmittedTap,
    Meter,
    Profile,
    bucket_percentiles,
    delivery_age_buckets,
    prepare,
    print_heaviest,
    report,
    rss_kb,
    server_named,
)

WARMUP = 2.0  # seconds of feed before the window opens


def measure(
    server,
    clients: int,
    rate: float,
    seconds: float,
    transport: str,
    profile: Path | None = None,
    stages: bool = False,
) -> dict:
    group = Clients(server, clients, seconds, transport)
    channel = getattr(server, "socketio_channel", None)
    tap = EmittedTap(channel) if stages and channel else None
    try:
        group.wait_ready()
        feeder = server.feed(rate, seconds + WARMUP + 1)
        time.sleep(WARMUP)
        feeders = [feeder.pid] if feeder is not None else []
        web, rest = Meter(server.web_pids), Meter(server.other_pids + feeders)
        load = Meter([process.pid for process in group.processes])
        for meter in (web, rest, load):
            meter.start()
        group.start_window()
        if tap is not None:
            tap.open()
            ages = delivery_age_buckets(server.urls)
        profiler = Profile(server.web_pids[0], profile) if profile else None
        time.sleep(seconds - 0.1)  # measure CPU while the clients still run
        web_cpu, rest_cpu, client_cpu = web.stop(), rest.stop(), load.stop()
        emitted = tap.close() if tap is not None else None
        sent = None
        if tap is not None:
            sent = bucket_percentiles(ages, delivery_age_buckets(server.urls))
        if profiler is not None:
            profiler.stop()
        report = group.reports()
        published = None
        if feeder is not None:
            published = int(feeder.communicate(timeout=30)[0].strip() or 0)
    finally:
        group.close()
        if tap is not None and tap.process.is_alive():
            tap.process.kill()
    per_second = report["received"] / report["seconds"]
    offered = rate * clients
    return {
        "server": server.name if transport == "websocket" else f"{server.name}/{transport}",
        "transport": transport,
        "instances": len(server.urls),
        "clients": clients,
        "rate": rate,
        # what the feed managed over its whole run (warm-up included), per second
        "published_per_s": round(published / (seconds + WARMUP + 1)) if published else None,
        "delivered_per_s": round(per_second),
        "delivered_ratio": round(per_second / offered, 3) if offered else None,
        "messages_per_client_s": round(report["messages"] / report["seconds"] / clients, 1),
        "latency_ms": report["latency_ms"],
        # with --stages: the same, measured where the consumer hands events to Socket.IO
        "emitted_latency_ms": emitted,
        # and where the web instances' rounds send them (upper bounds of their buckets)
        "sent_latency_ms": sent,
        "client_errors": report["errors"] + report["disconnects"],
        "web_cpu": round(web_cpu, 2),
        # deliveries per second of web CPU: what one core of the web side delivers
        "delivered_per_web_cpu_s": round(per_second / web_cpu) if web_cpu else None,
        "other_cpu": round(rest_cpu, 2),
        "client_cpu": round(client_cpu, 2),
        "web_rss_mb": round(sum(rss_kb(pid) for pid in server.web_pids) / 1024, 1),
    }


def table(rows: list[dict]) -> str:
    head = (
        f"{'server':<15}{'inst':>5}{'rate/s':>8}{'delivered/s':>13}{'ratio':>7}"
        f"{'msg/cl/s':>10}{'p50':>6}{'p99':>7}{'max':>7}{'webCPU':>8}{'del/webCPUs':>12}"
        f"{'restCPU':>8}{'cliCPU':>8}{'err':>5}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        latency = row["latency_ms"]
        lines.append(
            f"{row['server']:<15}{row['instances']:>5}{row['rate']:>8g}"
            f"{row['delivered_per_s']:>13,}{row['delivered_ratio']:>7}"
            f"{row['messages_per_client_s']:>10}{latency.get('p50', '-'):>6}"
            f"{latency.get('p99', '-'):>7}{latency.get('max', '-'):>7}"
            f"{row['web_cpu']:>8}{format(row['delivered_per_web_cpu_s'] or 0, ','):>12}"
            f"{row['other_cpu']:>8}{row['client_cpu']:>8}"
            f"{row['client_errors']:>5}"
        )
    return "\n".join(lines)


def stages(rows: list[dict]) -> str:
    """Where the latency goes: up to Socket.IO's exchange (the producer, RabbitMQ, the
    consumer and its database), and all the way to the clients."""
    lines = []
    for row in rows:
        emitted, whole = row["emitted_latency_ms"], row["latency_ms"]
        if not emitted or not whole:
            continue
        sent = row.get("sent_latency_ms") or {}
        lines.append(
            f"rate {row['rate']:>6g}/s  {row['server']}: emitted p50 {emitted['p50']} "
            f"p99 {emitted['p99']} max {emitted['max']} ms;  sent by the rounds p50 "
            f"<={sent.get('p50', '-')} p99 <={sent.get('p99', '-')} ms;  at the clients "
            f"p50 {whole['p50']} p99 {whole['p99']} max {whole['max']} ms"
        )
    return "\n".join(lines)


def ratios(rows: list[dict]) -> str:
    """Pulseboard beside each baseline at the same rate: delivered/s and p99 as ratios."""
    by_key = {(row["server"], row["rate"]): row for row in rows}
    lines = []
    against = {
        "pulseboard": ("node-batched", "node", "flask-socketio"),
        "pulseboard/sse": ("pulseboard", "node"),  # SSE beside Socket.IO on WebSocket
        "pulseboard/polling": ("pulseboard", "node/polling"),
    }
    for (server, rate), row in sorted(by_key.items(), key=lambda item: item[0][1]):
        for baseline in against.get(server, ()):
            other = by_key.get((baseline, rate))
            if other is None or not other["delivered_per_s"]:
                continue
            throughput = row["delivered_per_s"] / other["delivered_per_s"]
            ours, theirs = row["latency_ms"]["p99"], other["latency_ms"]["p99"]
            line = (
                f"rate {rate:>6g}/s  {server} / {baseline:<15} delivered x{throughput:5.2f}"
                f"   p99 {ours} vs {theirs} ms (x{ours / max(theirs, 1):.2f})"
            )
            mine, peer = row["delivered_per_web_cpu_s"], other["delivered_per_web_cpu_s"]
            if mine and peer:
                line += f"   per web-CPU-second x{mine / peer:.2f}"
            lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rates", default="100,300,600")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--instances", type=int, default=1, help="Pulseboard web instances")
    parser.add_argument(
        "--transports",
        default="websocket",
        help="websocket, polling, sse (Server-Sent Events: Pulseboard only), comma-separated",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy folded stacks of Pulseboard's (first) web worker during each window, "
        "written to PROFILE-<transport>-<rate>.folded",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also measure Pulseboard's latency where the consumer hands events to "
        "Socket.IO's exchange (the consumer's share; the rest is the web side's)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Pulseboard setting for this run (e.g. CONSUMER_BATCH_WAIT_MS=5); repeatable",
    )
    arguments = parser.parse_args()
    settings = dict(item.split("=", 1) for item in arguments.set)
    prepare()
    rates = [float(rate) for rate in arguments.rates.split(",")]
    rows = []
    for name in arguments.servers.split(","):
        instances = arguments.instances if name == "pulseboard" else 1
        for transport in arguments.transports.split(","):
            if transport == "sse" and name != "pulseboard":
                continue
            for rate in rates:
                # A fresh server for each rate: a backlog left by an overloaded run must
                # not spill into the next one's window.
                profile = None
                if arguments.profile and name == "pulseboard":
                    stem = arguments.profile.with_suffix("")
                    profile = stem.with_name(f"{stem.name}-{transport}-{rate:g}.folded")
                with server_named(name, instances, settings) as server:
                    rows.append(
                        measure(
                            server,
                            arguments.clients,
                            rate,
                            arguments.seconds,
                            transport,
                            profile,
                            arguments.stages,
                        )
                    )
                print(table(rows[-1:]).splitlines()[-1], flush=True)
                if profile is not None:
                    print_heaviest(profile, f"({transport}, {rate:g}/s)")
    print()
    print(table(rows))
    if any(row["emitted_latency_ms"] for row in rows):
        print()
        print(stages(rows))
    if comparison := ratios(rows):
        print()
        print(comparison)
    result = {"benchmark": "delivery", "seconds": arguments.seconds, "rows": rows}
    if settings:
        result["settings"] = settings
    report(result, arguments.out)


if __name__ == "__main__":
    main()
