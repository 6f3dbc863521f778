"""Believe X-Forwarded-* headers only from the proxies named in ``TRUSTED_PROXIES``.

Werkzeug's ProxyFix trusts the last ``PROXY_FIX_HOPS`` entries of the headers
whoever sent the request.  That is right while a web instance listens on
127.0.0.1 behind the Nginx of its own host; an instance that listens on a
private address for an Nginx on another host can also be reached by other
machines on that network, and any of them could then choose the client address
the rate limits, the metrics allow-list and the logs see.  So ProxyFix applies
to requests whose peer is a trusted proxy; any other peer is taken as the
client, its forwarded headers ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from werkzeug.middleware.proxy_fix import ProxyFix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.5``, ``10.0.0.0/24`` or ``::1`` as networks; ValueError names a bad one."""
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


class TrustedProxyFix:
    """WSGI middleware: ProxyFix for requests from ``trusted`` peers, the plain app otherwise."""

    def __init__(self, app, trusted: Iterable[Network], hops: int):
        self.app = app
        self.trusted = tuple(trusted)
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops)

    def is_trusted(self, address: str | None) -> bool:
        try:
            peer = ipaddress.ip_address((address or "").split("%", 1)[0])
        except ValueError:
            return False
        if peer.version == 6 and peer.ipv4_mapped:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.trusted)

    def __call__(self, environ, start_response):
        if self.is_trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)
