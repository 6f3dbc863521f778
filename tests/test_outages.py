"""The consumer's wait between attempts on a server that is down, and what counts as down."""

from __future__ import annotations

import pymysql
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from pulseboard.events.outages import Backoff, database_down, describe


def highest(backoff: Backoff, attempts: int) -> list[float]:
    backoff.draw = lambda: 0.999999
    return [round(backoff.next(), 3) for _ in range(attempts)]


def test_the_ceiling_doubles_from_the_base_up_to_the_cap():
    assert highest(Backoff(base=0.5, cap=30.0), 9) == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_the_wait_is_drawn_anywhere_below_the_ceiling():
    draws = iter([0.0, 0.5, 0.25])
    backoff = Backoff(base=1.0, cap=30.0, draw=lambda: next(draws))
    assert [backoff.next() for _ in range(3)] == [0.0, 1.0, 1.0]  # ceilings 1, 2, 4


def test_a_success_starts_the_count_again():
    backoff = Backoff(base=0.5, cap=30.0, draw=lambda: 0.5)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() == 0.25 and backoff.attempt == 1


def test_a_very_long_outage_stays_at_the_cap():
    backoff = Backoff(base=0.5, cap=30.0, draw=lambda: 0.5)
    backoff.attempt = 10_000
    assert backoff.next() == 15.0


def operational(code: int, text: str) -> OperationalError:
    return OperationalError("INSERT …", {}, pymysql.err.OperationalError(code, text))


@pytest.mark.parametrize(
    "error",
    [
        operational(2003, "Can't connect to MySQL server on '127.0.0.1'"),
        operational(2013, "Lost connection to MySQL server during query"),
    ],
)
def test_a_lost_or_refused_database_connection_is_an_outage(error):
    assert database_down(error)


@pytest.mark.parametrize(
    "error",
    [
        ProgrammingError("SELECT …", {}, pymysql.err.ProgrammingError(1146, "no such table")),
        IntegrityError("INSERT …", {}, pymysql.err.IntegrityError(1062, "duplicate")),
        KeyError("seq"),
    ],
)
def test_a_bug_or_a_schema_problem_is_not_an_outage(error):
    assert not database_down(error)


def test_an_outage_is_described_on_one_line_in_the_drivers_own_words():
    error = operational(2003, "Can't connect to MySQL server on '127.0.0.1'")
    assert "\n" in str(error)  # SQLAlchemy adds the statement and a link on further lines
    assert describe(error) == (
        "OperationalError: (2003, \"Can't connect to MySQL server on '127.0.0.1'\")"
    )
    assert describe(ConnectionResetError(104, "reset\nby peer")) == (
        "ConnectionResetError: [Errno 104] reset by peer"
    )
