"""What a user's browser does while an install is upgraded under it, run in the
install's own network (``nsenter -n``) against its Nginx, with this checkout's
Python: events go in through the install's RabbitMQ at a steady rate, a page
streams them over WebSocket and another over long-polling, and a third page asks
for a page of the site every 50 ms. It runs until its standard input closes,
then waits until both streams have everything that was published, and prints one
JSON line: per client missing, duplicated and out of order, and every answer
other than 200 (or none at all) the polling page got.

    python -m tests.install_client --domain D --cacert FILE --env-file FILE \\
        --email E --password P [--rate 20]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

import requests
from dotenv import dotenv_values

from pulseboard.config import load_config

from .faults import PageClient, SteadyProducer, count
from .streaming import CSRF

MAIN, SIDE = "market.ticks", "system.metrics"


def resolve_to_loopback(domain: str) -> None:
    """The install's name is its own loopback here, as its /etc/hosts says inside."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if host == domain else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def signed_in(url: str, cacert: str, email: str, password: str) -> requests.Session:
    browser = requests.Session()
    browser.trust_env = False  # REQUESTS_CA_BUNDLE would win over the install's certificate
    browser.verify = cacert
    # Over HTTPS the CSRF check wants the Referer a browser sends.
    browser.headers["Referer"] = f"{url}/"
    token = CSRF.search(browser.get(f"{url}/auth/login", timeout=10).text).group(1)
    response = browser.post(
        f"{url}/auth/login",
        data={"email": email, "password": password, "csrf_token": token},
        timeout=10,
    )
    if response.url.rstrip("/").endswith("/auth/login"):
        raise SystemExit(f"sign-in failed: HTTP {response.status_code} {response.text[:2000]}")
    return browser


class Poller(threading.Thread):
    """A signed-in page reloading the dashboard every 50 ms; keeps every answer but 200."""

    def __init__(self, browser: requests.Session, url: str):
        super().__init__(daemon=True)
        self.browser, self.url = browser, url
        self.stopped = threading.Event()
        self.answers = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                status = self.browser.get(self.url, timeout=10, allow_redirects=False).status_code
                if status != 200:
                    self.failures.append(f"{time.strftime('%X')} HTTP {status}")
            except requests.RequestException as error:
                self.failures.append(f"{time.strftime('%X')} {type(error).__name__}")
            self.answers += 1
            time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("--domain", "--cacert", "--env-file", "--email", "--password"):
        parser.add_argument(name, required=True)
    parser.add_argument("--rate", type=float, default=20)
    args = parser.parse_args()
    resolve_to_loopback(args.domain)
    url = f"https://{args.domain}"
    env = {key: value for key, value in dotenv_values(args.env_file).items() if value is not None}
    producer = SteadyProducer(load_config(env), 10**6, args.rate, MAIN, SIDE)
    clients = {
        transport: PageClient(
            url, signed_in(url, args.cacert, args.email, args.password), transport, [MAIN, SIDE]
        )
        for transport in ("websocket", "polling")
    }
    poller = Poller(signed_in(url, args.cacert, args.email, args.password), f"{url}/dashboard")
    poller.start()
    producer.start()
    print("streaming", flush=True)
    sys.stdin.read()  # until the test closes it
    producer.stopped.set()
    producer.join(30)
    poller.stopped.set()
    poller.join(15)
    # What the producer had confirmed, by payload number per topic: every one must arrive.
    published = len(producer.confirmed)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(client_total(c) >= published for c in clients.values()):
            break
        time.sleep(0.5)
    expected = expected_seqs(clients["websocket"], clients["polling"])
    report = {
        "published": published,
        "producer_error": repr(producer.error) if producer.error else None,
        "poll_answers": poller.answers,
        "poll_failures": poller.failures,
        "clients": {},
    }
    for transport, client in clients.items():
        counted = count(transport, client, expected)
        report["clients"][transport] = {
            "received": counted.received,
            "missing": published - client_total(client),
            "duplicated": counted.duplicated,
            "out_of_order": counted.out_of_order,
            "connects": client.connects,
        }
        client.close()
    print(json.dumps(report), flush=True)
    return 0


def client_total(client: PageClient) -> int:
    return sum(len(seqs) for seqs in client.received.values())


def expected_seqs(*clients: PageClient) -> dict[str, list[int]]:
    """Every seq that any client received, per topic (the log's own numbering)."""
    return {
        topic: sorted(set().union(*(c.received.get(topic, set()) for c in clients)))
        for topic in (MAIN, SIDE)
    }


if __name__ == "__main__":
    sys.exit(main())
