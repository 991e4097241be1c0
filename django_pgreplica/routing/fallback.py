"""Serve a read from the primary when its replica fails in the middle of the query.

Installed as an ``execute_wrapper`` on replica connections. When a statement fails with a
connection-level error (the replica was killed, restarted, or the network dropped), the
replica is marked failed for this scope and in its circuit breaker, and the same statement
runs on the primary. A statement the replica cancelled because of a recovery conflict
(replay needed a lock or a row version the query held) is retried on the primary as well,
but says nothing about the replica's health. The caller's cursor wrapper is pointed at the
primary's cursor, so the ORM fetches the rows from there without knowing. Reads inside a
transaction on the replica are not retried: their snapshot cannot move to another server.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError, connections

from ..conf import get_settings
from ..consistency import current_state
from ..db import close_quietly
from ..health import get_health
from . import stats

logger = logging.getLogger("django_pgreplica.fallback")

# On a hot standby, SQLSTATE 40001 means "canceling statement due to conflict with recovery"
# (a read-only autocommit statement cannot fail serialization otherwise).
SERIALIZATION_FAILURE = "40001"


def _connection_lost(alias: str) -> bool:
    """Did the error leave the replica connection unusable (not e.g. a query cancel)?"""
    conn = connections[alias]
    raw = conn.connection
    return raw is None or bool(getattr(raw, "closed", True)) or getattr(raw, "broken", False)


def _recovery_conflict(exc: BaseException) -> bool:
    """Was the statement cancelled by the standby to let WAL replay proceed?"""
    return getattr(exc.__cause__, "sqlstate", None) == SERIALIZATION_FAILURE


def replica_fallback(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    try:
        return execute(sql, params, many, context)
    except (OperationalError, InterfaceError) as exc:
        replica = context["connection"]
        alias: str = replica.alias
        settings = get_settings()
        lost = _connection_lost(alias)
        if (
            alias not in settings.replicas
            or replica.in_atomic_block
            or not (lost or _recovery_conflict(exc))
            or getattr(context["cursor"].cursor, "name", None)  # server-side cursor
        ):
            raise
        if lost:
            get_health(alias).record_failure(exc)
            state = current_state()
            state.failed.add(alias)
            if state.replica == alias:
                state.chosen = None
            close_quietly(alias)
            logger.warning("replica %s failed mid-query (%s); retrying on primary", alias, exc)
        else:
            logger.info("replica %s cancelled a read (%s); retrying on primary", alias, exc)
        stats.count_fallback(alias)
        stats.count_read(settings.primary, stats.REASON_FALLBACK)

        primary = connections[settings.primary]
        primary.ensure_connection()
        assert primary.connection is not None
        cursor = primary.connection.cursor()
        if many:
            cursor.executemany(sql, params)
        elif params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        context["cursor"].cursor = cursor
        return None
