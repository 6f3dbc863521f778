"""Pulseboard: live event streams for logged-in users, on Flask and Socket.IO.

The package's top level imports nothing.  gunicorn's master loads
``pulseboard.gunicorn_logging`` before the gevent worker patches the standard
library, and whatever this file imported would be loaded unpatched: ssl among
it, which outbound HTTPS (OAuth token exchange, SMTP over TLS) relies on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["ConfigError", "create_app"]

if TYPE_CHECKING:
    from .config_error import ConfigError
    from .factory import create_app


def __getattr__(name: str):
    if name == "create_app":
        from .factory import create_app

        return create_app
    if name == "ConfigError":
        from .config_error import ConfigError

        return ConfigError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
