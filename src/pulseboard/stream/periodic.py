"""A check a web process runs every few seconds for its sockets, in one greenlet."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicCheck:
    """``check(socketio)`` every ``app.config[setting]`` seconds in the app's context,
    started with the process's first socket; a failure is logged and the next round
    comes as usual, so the check never ends for good."""

    def __init__(self, name: str, setting: str, check: Callable):
        self.name, self.setting, self.check = name, setting, check
        self.started = False

    def ensure_running(self, socketio, app) -> None:
        if self.started:
            return
        self.started = True
        socketio.start_background_task(self._forever, socketio, app)

    def _forever(self, socketio, app) -> None:
        interval = app.config[self.setting]
        while True:
            socketio.sleep(interval)
            try:
                with app.app_context():
                    self.check(socketio)
            except Exception:
                log.exception("%s failed; trying again in %s s", self.name, interval)
