"""A RabbitMQ cluster of private nodes, for tests that stop a node or kill a consumer.

Each node has a name, ports and a folder of its own (the shared node is never
touched); they are started at once, clustered, and stopped at the end whatever
happens.  What RabbitMQ reports about the cluster (which node leads a quorum
queue, which consumer is the active one) is asked of a node still running.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .servers import RabbitNode, rabbitmqctl


@dataclass
class Cluster:
    nodes: list[RabbitNode]
    stopped: list[RabbitNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """BROKER_URL as an operator writes it for this cluster: every node, ';' between."""
        return ";".join(node.url for node in self.nodes)

    def ask(self, *args: str) -> list[list[str]]:
        """``rabbitmqctl ARGS`` on a running node; its output's tab-separated rows."""
        node = next(node for node in self.nodes if node not in self.stopped)
        listing = rabbitmqctl(node.node, *args)
        return [line.split("\t") for line in listing.splitlines() if "\t" in line]

    def leader_of(self, queue: str) -> RabbitNode:
        """The node that leads the quorum queue ``queue``, as RabbitMQ reports it."""
        leaders = dict(self.ask("list_queues", "name", "leader"))
        return next(node for node in self.nodes if node.node == leaders[queue])

    def stop(self, node: RabbitNode) -> None:
        self.stopped.append(node)
        node.stop()

    def consumer_hosts(self, queue: str) -> dict[str, bool]:
        """Address of each consumer on ``queue`` (its connection's peer) → whether it is
        the active one (single active consumer)."""
        consumers = [row for row in self.ask("list_consumers", "-p", "/",
                                             "queue_name", "channel_pid", "active")
                     if row[0] == queue]  # fmt: skip
        channels = dict(self.ask("list_channels", "pid", "connection"))
        peers = dict(self.ask("list_connections", "pid", "peer_host"))
        return {peers[channels[channel]]: active == "true" for _, channel, active in consumers}


def join(node: RabbitNode, cluster_node: RabbitNode) -> None:
    try:
        rabbitmqctl(node.node, "stop_app")
        rabbitmqctl(node.node, "join_cluster", cluster_node.node)
        rabbitmqctl(node.node, "start_app")
    except subprocess.CalledProcessError as error:
        raise RuntimeError(
            f"{node.node} did not join {cluster_node.node}: {' '.join(error.cmd[4:])} said "
            f"{(error.stderr or error.stdout or '').strip()}\nits log ends:\n{node.log_tail()}"
        ) from None


@contextlib.contextmanager
def rabbit_cluster(prefix: str, size: int = 3, address: str = "127.0.0.1"):
    """``size`` private nodes named ``<prefix><n>-<run>``, clustered; removed after."""
    run = secrets.token_hex(2)
    nodes = [RabbitNode(f"{prefix}{number}-{run}", address) for number in range(1, size + 1)]
    first, *others = nodes
    with ThreadPoolExecutor(size) as pool:
        try:
            for node in nodes:
                node.start()
            list(pool.map(RabbitNode.wait_started, nodes))
            for node in others:  # one at a time, as RabbitMQ's guide has it
                join(node, first)
            yield Cluster(nodes)
        finally:
            list(pool.map(RabbitNode.remove, nodes))
