"""Following the primary through a failover (Patroni, or any promotion behind a multi-host
``HOST`` with ``target_session_attrs=read-write``).

libpq finds the new primary by itself, but only once one takes writes: during a switchover
(2-4 s with Patroni) every host refuses, and each request that connects then would fail.

- **Connecting waits** (:func:`install`): a connection attempt to the primary alias that
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

Django opens connections in ``DatabaseWrapper.connect()``, with no hook before it; the
engine's wrapper class gets a ``connect`` that does the waiting for the primary alias only
(every other alias, and PRIMARY_WAIT_SECONDS = 0, go straight to Django's own).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from django.db import OperationalError, connections

from .. import clock
from ..conf import get_settings
from ..db import close_quietly, may_wait_for_primary, one_line

logger = logging.getLogger("django_pgreplica.router")

READ_ONLY_SQL_TRANSACTION = "25006"
# Connection failures that a failover explains. Anything with an SQLSTATE of these classes
# (bad password, no such database or role) would fail the same way a moment later.
NOT_A_FAILOVER = ("28", "3D")
FIRST_PAUSE, MAX_PAUSE = 0.05, 0.5
# Inside DatabaseWrapper.connect() the driver's own error arrives (Django wraps it later).
CONNECT_ERRORS = (OperationalError, psycopg.OperationalError)

def failover_error(exc: BaseException) -> bool:
    """Could this failed connection attempt succeed once a new primary takes over?"""
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)
    return not (sqlstate and str(sqlstate).startswith(NOT_A_FAILOVER))


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


def install() -> None:
    """Make the primary alias's connection attempts wait for a primary (idempotent)."""
    settings = get_settings()
    wrapper_class = type(connections[settings.primary])
    if getattr(wrapper_class.connect, "pgreplica_waits", False):
        return
    original = wrapper_class.connect

    @functools.wraps(original)
    def connect(self: Any) -> None:
        current = get_settings()
        wait = current.primary_wait_seconds
        if self.alias != current.primary or wait <= 0 or not may_wait_for_primary():
            return original(self)
        connect_waiting(lambda: original(self), self.alias, wait)

    connect.pgreplica_waits = True  # type: ignore[attr-defined]
    wrapper_class.connect = connect  # type: ignore[method-assign]


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
