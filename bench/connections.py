"""Server memory per idle WebSocket connection, and how many connections one instance holds.

    python bench/connections.py [--connections 2000] [--servers pulseboard,flask-socketio,node]

For each server (see bench/common.py): warms it up with a few clients, then
opens ``--connections`` Node.js Socket.IO clients over WebSocket, each signed in
(Pulseboard) and subscribed to one topic, and leaves them idle.  Memory per
connection is the growth of the server process's RSS over its warmed-up RSS,
divided by the connections that got ready.  Also prints how long the
connections took to open and how many failed.  ``--connections 10000`` is the
one-instance capacity check; ``--instances 2`` spreads the clients over two
Pulseboard instances (RSS is then their sum).  ``--transport upgrade`` connects as a
browser's page does: long-polling first, then upgraded to WebSocket.  ``--profile FILE`` samples the
Pulseboard web worker with py-spy while the connections open and writes the
folded stacks (one line per stack, ``;``-separated frames and a count) to FILE,
with the heaviest frames printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import (
    SERVERS,
    Clients,
    Meter,
    Profile,
    prepare,
    print_heaviest,
    report,
    rss_kb,
    server_named,
)

WARM_UP_CLIENTS = 200
SETTLE = 3.0  # seconds idle before reading the RSS


def measure(
    server, connections: int, profile: Path | None = None, transport: str = "websocket"
) -> dict:
    warm = Clients(server, WARM_UP_CLIENTS, seconds=1, transport=transport)
    warm.wait_ready()
    warm.close()
    time.sleep(SETTLE)
    before = sum(rss_kb(pid) for pid in server.web_pids)
    group = Clients(server, connections, seconds=3600, transport=transport)
    profiler = Profile(server.web_pids[0], profile) if profile else None
    web = Meter(server.web_pids)
    try:
        web.start()
        started = time.monotonic()
        ready = group.wait_ready()
        opened_in = time.monotonic() - started
        web_cpu = web.stop()
        if profiler is not None:
            profiler.stop()
        time.sleep(SETTLE)
        after = sum(rss_kb(pid) for pid in server.web_pids)
    finally:
        group.close()
    return {
        "server": server.name,
        "instances": len(server.urls),
        "transport": transport,
        "connections": connections,
        "connections_per_s": round(ready["ready"] / opened_in, 1),
        "ready": ready["ready"],
        "errors": ready["errors"],
        "open_seconds": round(opened_in, 1),
        # The web processes' CPU while the connections opened (1.0 = a core busy), and
        # what each connection cost them.
        "web_cpu": round(web_cpu, 2),
        "web_cpu_ms_per_connection": round(web_cpu * opened_in / max(ready["ready"], 1) * 1000, 2),
        "rss_mb_before": round(before / 1024, 1),
        "rss_mb_idle": round(after / 1024, 1),
        "kb_per_connection": round((after - before) / max(ready["ready"], 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--instances", type=int, default=1, help="Pulseboard web instances")
    parser.add_argument(
        "--transport", choices=("websocket", "upgrade"), default="websocket",
        help="WebSocket from the start, or long-polling first and then upgraded",
    )  # fmt: skip
    parser.add_argument("--out", type=Path)
    parser.add_argument("--profile", type=Path, help="py-spy folded stacks of the opening")
    arguments = parser.parse_args()
    prepare()
    rows = []
    for name in arguments.servers.split(","):
        instances = arguments.instances if name == "pulseboard" else 1
        with server_named(name, instances) as server:
            profile = arguments.profile if name == "pulseboard" else None
            rows.append(measure(server, arguments.connections, profile, arguments.transport))
    if arguments.profile:
        print_heaviest(arguments.profile, "while opening")
    print(
        f"{'server':<15}{'connections':>12}{'ready':>7}{'errors':>7}{'open s':>8}"
        f"{'RSS before MB':>15}{'RSS idle MB':>13}{'KB/conn':>9}{'webCPU':>8}{'ms/conn':>9}"
    )
    for row in rows:
        print(
            f"{row['server']:<15}{row['connections']:>12}{row['ready']:>7}{row['errors']:>7}"
            f"{row['open_seconds']:>8}{row['rss_mb_before']:>15}{row['rss_mb_idle']:>13}"
            f"{row['kb_per_connection']:>9}{row['web_cpu']:>8}{row['web_cpu_ms_per_connection']:>9}"
        )
    ours = next((row for row in rows if row["server"] == "pulseboard"), None)
    for row in rows:
        if ours is not None and row is not ours and ours["kb_per_connection"] > 0:
            ratio = row["kb_per_connection"] / ours["kb_per_connection"]
            print(f"memory per connection: {row['server']} / pulseboard = {ratio:.2f}")
    result = {"benchmark": "connections", "rows": rows}
    report(result, arguments.out)


if __name__ == "__main__":
    main()
