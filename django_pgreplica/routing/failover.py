"""Following the primary through a failover (Patroni, or any promotion behind a multi-host
``HOST`` with ``target_session_attrs=read-write``).

libpq finds the new primary by itself, but only once one takes writes: during a switchover
(2-4 s with Patroni) every host refuses, and each request that connects then would fail.

- **Connecting waits** (:func:`connect_waiting`): a connection attempt to the primary alias that
  fails because no server took it (refused, timed out, starting up or shutting down, or
  only standbys answered) is tried again, backing off, for up to PRIMARY_WAIT_SECONDS.
  Nothing was sent on a connection that never opened, so nothing can run twice. Reads do
  not wait here: a read that finds the primary down goes to a replica as a last resort
  (:func:`~django_pgreplica.db.not_waiting`), except one that must see a write no
  reachable replica has; nor do monitoring and WAL-position reads.
- **A statement refused as read-only** (SQLSTATE 25006: the connection is on a server that
  became a standby) in autocommit is rerun once on a fresh connection to the new primary
  (:func:`primary_write_retry`): the server refused it, so it did not run. Inside a
  transaction it is not rerun (the transaction is lost with the connection), and neither is
  a statement whose connection broke mid-way: it may have run.

:mod:`.connecting` calls :func:`connect_waiting` when Django opens the primary's connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from django.db import OperationalError

from .. import clock
from ..db import close_quietly, one_line

logger = logging.getLogger("django_pgreplica.router")

READ_ONLY_SQL_TRANSACTION = "25006"
# Connection failures that no failover explains: they would fail the same way a moment
# later. libpq reports a failed connection without an SQLSTATE, so by its message too.
NOT_A_FAILOVER = ("28", "3D")  # SQLSTATE classes: authorization, no such database
NOT_A_FAILOVER_MESSAGES = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # database or role
    "certificate verify failed",
    "server does not support SSL",
)
FIRST_PAUSE, MAX_PAUSE = 0.05, 0.5
# Inside DatabaseWrapper.connect() the driver's own error arrives (Django wraps it later).
CONNECT_ERRORS = (OperationalError, psycopg.OperationalError)


def failover_error(exc: BaseException) -> bool:
    """Could this failed connection attempt succeed once a new primary takes over?"""
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)
    if sqlstate and str(sqlstate).startswith(NOT_A_FAILOVER):
        return False
    message = str(exc)
    return not any(text in message for text in NOT_A_FAILOVER_MESSAGES)


def connect_waiting(attempt: Callable[[], None], alias: str, wait: float) -> None:
    """``attempt()`` until it connects, a failure no failover explains, or ``wait`` runs out."""
    deadline = clock.monotonic() + wait
    pause = FIRST_PAUSE
    failures = 0
    while True:
        try:
            attempt()
        except CONNECT_ERRORS as exc:
            left = deadline - clock.monotonic()
            if not failover_error(exc) or left <= 0:
                if failures:
                    logger.error(
                        "primary %s: no server took the connection for %gs (%s)",
                        alias,
                        wait,
                        one_line(exc),
                    )
                raise
            if not failures:
                logger.warning(
                    "primary %s: connection failed (%s); waiting up to %gs for a primary",
                    alias,
                    one_line(exc),
                    wait,
                )
            failures += 1
            clock.sleep(min(pause, left))
            pause = min(pause * 2, MAX_PAUSE)
            continue
        if failures:
            logger.warning("primary %s: connected after %d failed attempts", alias, failures)
        return


def _refused_read_only(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION


def primary_write_retry(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    """Execute wrapper on the primary: a statement a standby refused (25006), outside any
    transaction, runs once more on a new connection, which reaches the new primary."""
    try:
        return execute(sql, params, many, context)
    except Exception as exc:
        conn = context["connection"]
        if not _refused_read_only(exc) or conn.in_atomic_block:
            raise
        logger.warning(
            "primary %s: the server is read-only now (%s); reconnecting to the new primary",
            conn.alias,
            one_line(exc),
        )
        from .fallback import rerun  # here: fallback's imports lead back to this module

        close_quietly(conn.alias)
        rerun(conn.alias, context, sql, params, many)  # connecting waits for a primary
        return None
