"""Riding out an outage of the database or the broker: what counts as one, how long
to wait before the next attempt, and how to say it in one log line.

The wait is exponential backoff with full jitter: each failed attempt doubles a ceiling,
from ``base`` up to ``cap``, and the wait is drawn at random below it.  The
ceiling keeps a long outage from being hammered; the randomness keeps every
consumer that lost the same server from coming back in step.  A success
starts the count again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

# 2**63 times any sensible base is past every cap; counting further only risks overflow.
MAX_DOUBLINGS = 63


@dataclass
class Backoff:
    base: float = 0.5
    cap: float = 30.0
    # A number in [0, 1): random.random, or a fixed source in tests.
    draw: Callable[[], float] = random.random
    attempt: int = 0

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt number ``attempt`` (1, 2, ...)."""
        return min(self.cap, self.base * 2 ** min(attempt - 1, MAX_DOUBLINGS))

    def next(self) -> float:
        """Count one more failed attempt; the seconds to wait before the next one."""
        self.attempt += 1
        return self.ceiling(self.attempt) * self.draw()

    def reset(self) -> None:
        self.attempt = 0


def database_down(error: BaseException) -> bool:
    """Is ``error`` the database being unreachable (wait for it), not a bug (report it)?"""
    if isinstance(error, OperationalError | InterfaceError | DisconnectionError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def describe(error: BaseException) -> str:
    """The error on one line: the driver's own for a database error, without the
    SQL and the link SQLAlchemy adds on further lines."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]
