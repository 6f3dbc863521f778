"""The console scripts ``pulseboard`` and ``pulseboard-consumer``: build the app
from the environment and hand it on.

They sit above the package: nothing in it imports this module, so the app
factory is imported here once, at the top.  A bad setting ends either script
with one line naming the variable and exit status 78 (EX_CONFIG), which systemd
and shells read as "fix the configuration".
"""

from __future__ import annotations

import sys

import click
from flask.cli import FlaskGroup

from . import ConfigError, create_app
from .events.service import run_service

EX_CONFIG = 78


class ConfigurationProblem(click.ClickException):
    exit_code = EX_CONFIG


def _create_app():
    try:
        return create_app()
    except ConfigError as error:
        raise ConfigurationProblem(str(error)) from None


def main() -> None:
    """``pulseboard``: Flask's CLI bound to this app."""
    FlaskGroup(create_app=_create_app, help="Pulseboard operator commands.")()


def consumer() -> None:
    """``pulseboard-consumer``: the consumer service, until SIGTERM or SIGINT."""
    try:
        app = create_app()
    except ConfigError as error:
        print(f"pulseboard-consumer: configuration error: {error}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
    run_service(app)
