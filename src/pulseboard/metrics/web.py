"""``/metrics`` for Prometheus, and the HTTP request counts and timings behind it.

``/metrics`` answers only addresses in ``METRICS_ALLOWED_NETWORKS`` (loopback
by default) or a request with ``Authorization: Bearer <METRICS_TOKEN>``.  The
address is ``request.remote_addr``: behind Nginx with ``PROXY_FIX_HOPS`` set it
is the client's address from X-Forwarded-For, so a scrape through the public
site counts as coming from outside, as it should.  The path carries no
session (``SESSIONLESS_PREFIXES``), no form and no rate limit.

With ``PROMETHEUS_MULTIPROC_DIR`` a scrape of any instance returns what every
process writing to that folder counted, summed; without it, this process's own.
"""

from __future__ import annotations

import hmac
import ipaddress
import time

from flask import Blueprint, Flask, Response, current_app, g, request

from . import configure, get, http_request, multiprocess_dir
from .sockets import set_instance

bp = Blueprint("metrics", __name__)


def init_app(app: Flask) -> None:
    from ..extensions import limiter

    configure(app.config["PROMETHEUS_MULTIPROC_DIR"])
    set_instance(app.config["PORT"])
    app.extensions["pulseboard.metrics_networks"] = tuple(
        ipaddress.ip_network(net, strict=False) for net in app.config["METRICS_ALLOWED_NETWORKS"]
    )
    app.before_request(_start_clock)
    app.after_request(_count_request)
    limiter.exempt(bp)
    app.register_blueprint(bp)


def _start_clock() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None:
        # Unmatched paths share one label: a scan of random URLs must not add labels.
        endpoint = request.endpoint or "unmatched"
        http_request(endpoint, request.method, response.status_code, time.perf_counter() - started)
    return response


@bp.get("/metrics")
def scrape():
    if not may_scrape():
        return Response("forbidden\n", status=403, mimetype="text/plain")
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    get()  # make sure this process's own metrics exist before the first scrape
    response = Response(generate_latest(scrape_registry()), mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def may_scrape() -> bool:
    token = current_app.config["METRICS_TOKEN"]
    offered = request.headers.get("Authorization", "")
    if offered:
        # A token that is sent must be right, whatever the address.
        scheme, _, value = offered.partition(" ")
        return bool(token) and scheme.lower() == "bearer" and _same(value.strip(), token)
    return address_allowed(
        request.remote_addr, current_app.extensions["pulseboard.metrics_networks"]
    )


def address_allowed(address: str | None, networks) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def _same(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode(), expected.encode())


def scrape_registry():
    """The registry a scrape reads: every process's files, or this process's memory."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = multiprocess_dir()
    if not directory:
        if _greenlets not in _registered:
            REGISTRY.register(_greenlets)
            _registered.add(_greenlets)
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    registry.register(_greenlets)
    return registry


class GreenletCount:
    """``pulseboard_process_greenlets``: greenlets alive in the scraped process.

    A request or socket that never ends leaves its greenlet behind, so a leak
    shows as a count that only grows.  Counted at scrape time by walking the
    garbage collector's objects: tens of milliseconds for a process holding
    thousands of sockets, once per scrape.
    """

    def collect(self):
        import gc

        from greenlet import greenlet
        from prometheus_client.core import GaugeMetricFamily

        count = sum(1 for thing in gc.get_objects() if isinstance(thing, greenlet))
        yield GaugeMetricFamily(
            "pulseboard_process_greenlets", "Greenlets alive in the scraped web process", count
        )


_greenlets = GreenletCount()
_registered: set = set()
