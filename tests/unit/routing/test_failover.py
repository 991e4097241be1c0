"""Waiting for a primary while no server takes the connection (a failover), on a fake clock."""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError

from django_pgreplica.clock import FakeClock
from django_pgreplica.routing.failover import connect_waiting, failover_error


class Attempts:
    """Fails ``failures`` times with ``error``, then connects."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.left, self.error, self.calls = failures, error, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise self.error


def refused() -> Exception:
    error = OperationalError("connection failed: Connection refused")
    error.__cause__ = psycopg.OperationalError("Connection refused")
    return error


def bad_password() -> Exception:
    error = OperationalError('password authentication failed for user "app"')
    cause = psycopg.errors.InvalidPassword('password authentication failed for user "app"')
    error.__cause__ = cause
    return error


def test_a_switchover_is_waited_out(clock: FakeClock) -> None:
    attempts = Attempts(6, refused())
    started = clock.now
    connect_waiting(attempts, "default", wait=5.0)
    assert attempts.calls == 7
    assert 0 < clock.now - started < 5.0  # backed off, within the bound


def test_no_primary_within_the_wait_fails_with_its_error(clock: FakeClock) -> None:
    attempts = Attempts(10_000, refused())
    started = clock.now
    with pytest.raises(OperationalError, match="refused"):
        connect_waiting(attempts, "default", wait=5.0)
    assert clock.now - started == pytest.approx(5.0)
    assert attempts.calls < 20  # backing off: not a busy loop


def test_errors_no_failover_explains_fail_at_once(clock: FakeClock) -> None:
    assert not failover_error(bad_password())
    assert failover_error(refused())
    attempts = Attempts(1, bad_password())
    with pytest.raises(OperationalError, match="password"):
        connect_waiting(attempts, "default", wait=5.0)
    assert attempts.calls == 1


def test_the_drivers_own_error_is_waited_out_too(clock: FakeClock) -> None:
    # Inside DatabaseWrapper.connect() psycopg's error is not wrapped by Django yet.
    attempts = Attempts(3, psycopg.OperationalError("session is read-only"))
    connect_waiting(attempts, "default", wait=5.0)
    assert attempts.calls == 4


@pytest.mark.parametrize(
    "message",
    [
        'connection failed: connection to server at "10.0.0.1", port 5432 failed: FATAL:  '
        'password authentication failed for user "app"',
        'connection failed: ... failed: FATAL:  no pg_hba.conf entry for host "10.0.0.9"',
        'connection failed: ... failed: FATAL:  database "shop" does not exist',
        "connection failed: ... failed: SSL error: certificate verify failed",
    ],
)
def test_what_libpq_reports_without_an_sqlstate_is_judged_by_its_message(
    clock: FakeClock, message: str
) -> None:
    error = psycopg.OperationalError(message)  # libpq's connection errors carry no SQLSTATE
    assert error.sqlstate is None and not failover_error(error)
    attempts = Attempts(1, error)
    with pytest.raises(psycopg.OperationalError):
        connect_waiting(attempts, "default", wait=5.0)
    assert attempts.calls == 1


def test_a_wait_of_zero_tries_once(clock: FakeClock) -> None:
    attempts = Attempts(1, refused())
    with pytest.raises(OperationalError):
        connect_waiting(attempts, "default", wait=0.0)
    assert attempts.calls == 1
