"""Hosts on one machine: each a network namespace with an address of its own.

A bridge in the root namespace holds the network's first address (``.1``:
Nginx, the RabbitMQ nodes and the database listen there); every host is a
namespace joined to the bridge by a veth pair.  A process runs on a host
through ``ip netns exec``.  Taking the root end of a host's veth down unplugs
the host's cable: its connections stall as in a real network failure, and come
back when the link does.

Names carry the pid of the run that made them (``pbh<pid>…``), so a run
removes what a crashed one left behind and never touches a run still going.
Test clients stay in the root namespace; ``client_session`` and
``SourceBoundWebSocket`` give each one a loopback address of its own, so
Nginx's hash on the client address spreads them over the web hosts as it
spreads browsers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import requests
import websocket
from requests.adapters import HTTPAdapter

from .servers import PrivateMariaDB

IP = shutil.which("ip") or "/usr/sbin/ip"
PREFIX = "pbh"
FIRST_HOST = 11  # host addresses are .11, .12, …; .1 is the bridge


def ip(*args: str) -> str:
    return subprocess.run(
        [IP, *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


@dataclass
class Host:
    """A network namespace with one address, on the bridge through ``link``."""

    name: str
    address: str
    link: str  # the veth end in the root namespace

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run on this host."""
        return [IP, "netns", "exec", self.name, *argv]

    def network_down(self) -> None:
        ip("link", "set", self.link, "down")

    def network_up(self) -> None:
        ip("link", "set", self.link, "up")


class Network:
    """A bridge and hosts on it; ``close()`` removes every namespace, link and process."""

    def __init__(self):
        remove_leftovers()
        self.owner = os.getpid()
        self.bridge = f"{PREFIX}{self.owner}b"
        self.subnet = free_subnet(self.owner)
        self.gateway = str(self.subnet.network_address + 1)
        self.hosts: list[Host] = []

    def create(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add_host(self, role: str) -> Host:
        number = len(self.hosts) + 1
        host = Host(
            name=f"{PREFIX}-{self.owner}-{role}",
            address=str(self.subnet.network_address + FIRST_HOST + len(self.hosts)),
            link=f"{PREFIX}{self.owner}h{number}",
        )
        self.hosts.append(host)  # before it exists: close() removes a half-made one
        peer = f"{PREFIX}{self.owner}p{number}"
        ip("netns", "add", host.name)
        ip("link", "add", host.link, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", host.name)
        ip("link", "set", host.link, "master", self.bridge)
        ip("link", "set", host.link, "up")
        inside = ["netns", "exec", host.name, IP]
        ip(*inside, "link", "set", peer, "name", "eth0")
        ip(*inside, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip(*inside, "link", "set", "eth0", "up")
        ip(*inside, "link", "set", "lo", "up")
        return host

    def close(self) -> None:
        for host in self.hosts:
            remove_namespace(host.name)
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("link", "del", host.link)  # gone with its peer, unless half-made
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", self.bridge)


@contextlib.contextmanager
def network():
    made = Network()
    try:
        made.create()
        yield made
    finally:
        made.close()


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A /24 in 10.77.0.0/16 that no route or address on this machine overlaps."""
    routes = ip("-4", "route", "show", "table", "all")
    taken = [
        ipaddress.IPv4Network(found, strict=False)
        for found in re.findall(r"\b\d+\.\d+\.\d+\.\d+(?:/\d+)?", routes)
    ]
    for step in range(256):
        subnet = ipaddress.IPv4Network(f"10.77.{(seed + step) % 256}.0/24")
        if not any(subnet.overlaps(network) for network in taken if network.prefixlen):
            return subnet
    raise RuntimeError("no free /24 in 10.77.0.0/16 for the test hosts")


def remove_namespace(name: str) -> None:
    """Kill what still runs on the host, then delete its namespace."""
    with contextlib.suppress(subprocess.CalledProcessError):
        for pid in ip("netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(subprocess.CalledProcessError):
        ip("netns", "del", name)


def remove_leftovers() -> None:
    """Namespaces and links of runs whose process is gone (a crash, a killed run)."""

    def dead(owner: str) -> bool:
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            return True
        return False

    for line in ip("netns", "list").splitlines():
        match = re.match(rf"({PREFIX}-(\d+)-\S+)", line)
        if match and dead(match.group(2)):
            remove_namespace(match.group(1))
    for line in ip("-o", "link", "show").splitlines():
        match = re.match(rf"\d+: ({PREFIX}(\d+)[bhp]\d*)[@:]", line)
        if match and dead(match.group(2)):
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("link", "del", match.group(1))


def start_mariadb(directory: Path, gateway: str) -> PrivateMariaDB:
    """A MariaDB of its own on loopback (for the test's own administration) and the bridge."""
    mariadb = PrivateMariaDB(directory, bind_address=f"127.0.0.1,{gateway}")
    mariadb.start()
    return mariadb


def database_for_hosts(mariadb: PrivateMariaDB, gateway: str) -> str:
    """A database the hosts reach on the bridge, with a user allowed from their network."""
    mariadb.create_database("pulseboard")
    password = secrets.token_hex(12)
    network = gateway.rsplit(".", 1)[0] + ".%"
    admin = pymysql.connect(host="127.0.0.1", port=mariadb.port, user="root")
    with admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE USER 'pulseboard'@'{network}' IDENTIFIED BY '{password}'")
        cursor.execute(f"GRANT ALL ON pulseboard.* TO 'pulseboard'@'{network}'")
    return (
        f"mysql+pymysql://pulseboard:{password}@{gateway}:{mariadb.port}/pulseboard?charset=utf8mb4"
    )


class SourceAddressAdapter(HTTPAdapter):
    """Every connection of a ``requests.Session`` from one local address."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_session(address: str, cafile: Path) -> requests.Session:
    """A browser's session whose every request leaves from ``address``."""
    session = requests.Session()
    session.verify = str(cafile)
    adapter = SourceAddressAdapter(address)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class SourceBoundWebSocket(websocket.WebSocket):
    """websocket-client's WebSocket, connected from ``source`` (TLS checked against
    ``cafile``).  Given to Engine.IO as ``websocket_extra_options={"class_": ...}``;
    made per client by :func:`websocket_options`.

    Engine.IO drops a WebSocket without closing it when the server ends the
    connection or a reconnect fails half-way; every one made is kept in
    ``opened`` so that :func:`close_websockets` closes them when the client is done."""

    source = "127.0.0.1"
    cafile: str | None = None
    opened: list[websocket.WebSocket]

    def connect(self, url, **options):
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        sock = socket.create_connection(
            (parts.hostname, port), options.get("timeout"), source_address=(self.source, 0)
        )
        try:
            if secure:
                context = ssl.create_default_context(cafile=self.cafile)
                sock = context.wrap_socket(sock, server_hostname=parts.hostname)
        except OSError:
            sock.close()
            raise
        self.opened.append(self)
        # A socket handed in is used as it is: connected, and wrapped here.
        super().connect(url, **{**options, "socket": sock})


def websocket_options(address: str, cafile: Path) -> dict:
    """Engine.IO's ``websocket_extra_options`` for a client at ``address``."""
    bound = type(
        "BoundWebSocket",
        (SourceBoundWebSocket,),
        {"source": address, "cafile": str(cafile), "opened": []},
    )
    return {"class_": bound}


def close_websockets(options: dict) -> None:
    """Close every WebSocket made with ``options`` (:func:`websocket_options`)."""
    for made in options["class_"].opened:
        made.shutdown()
