"""Rerun a read elsewhere when its server fails in the middle of the query.

Installed as ``execute_wrapper``\\ s. On a replica connection: when a statement fails with a
connection-level error (the replica was killed, restarted, or the network dropped), the
replica is marked failed for this scope and in its circuit breaker, and the statement runs
on the primary — or, if the primary cannot be reached, on another replica as a last resort.
A statement the replica cancelled because of a recovery conflict (replay needed a lock or a
row version the query held) is rerun as well, but says nothing about the replica's health.

On the primary connection: a *read* whose connection was lost (the primary died or
restarted) is rerun on a replica as a last resort, when the scope has nothing it must see
there (it did not write, and any token it carries has been replayed by that replica).
A statement that may have written is never rerun anywhere.

The caller's cursor wrapper is pointed at the new server's cursor, so the ORM fetches the
rows from there without knowing. Reads inside a transaction are not rerun: their snapshot
cannot move to another server.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import InterfaceError, OperationalError, connections

from .. import clock
from ..conf import get_settings
from ..consistency import RoutingState, current_state, is_write_sql
from ..db import close_quietly
from ..health import get_health, primary_health
from ..lsn import Position
from . import stats
from .connect import primary_reachable
from .last_resort import last_resort_replica
from .pool import discard_pool
from .select import pending

logger = logging.getLogger("django_pgreplica.fallback")

# On a hot standby, SQLSTATE 40001 means "canceling statement due to conflict with recovery"
# (a read-only autocommit statement cannot fail serialization otherwise).
SERIALIZATION_FAILURE = "40001"


def _connection_lost(alias: str) -> bool:
    """Did the error leave the connection unusable (not e.g. a query cancel)?"""
    raw = connections[alias].connection
    return raw is None or bool(getattr(raw, "closed", True)) or getattr(raw, "broken", False)


def _recovery_conflict(exc: BaseException) -> bool:
    """Was the statement cancelled by the standby to let WAL replay proceed?"""
    return getattr(exc.__cause__, "sqlstate", None) == SERIALIZATION_FAILURE


def _server_side(context: Any) -> bool:
    return bool(getattr(context["cursor"].cursor, "name", None))


def rerun(alias: str, context: Any, sql: str, params: Any, many: bool) -> None:
    """Run the statement on ``alias`` and hand its cursor to the caller's cursor wrapper."""
    conn = connections[alias]
    conn.ensure_connection()
    assert conn.connection is not None
    cursor = conn.connection.cursor()
    if many:
        cursor.executemany(sql, params)
    elif params is None:
        cursor.execute(sql)
    else:
        cursor.execute(sql, params)
    context["cursor"].cursor = cursor


def _elsewhere(state: RoutingState) -> tuple[bool, Position | None]:
    """May another server rerun this scope's read, and what must it have replayed? Not
    after a write, in use_primary() or under a time pin: only the primary may answer."""
    if state.wrote or state.forced:
        return False, None
    time_pinned, need = pending(get_settings(), state)
    return not time_pinned, need


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
            or _server_side(context)
        ):
            raise
        state = current_state()
        if lost:
            get_health(alias).record_failure(exc)
            state.failed.add(alias)
            if state.replica == alias:
                state.chosen = None
            close_quietly(alias)
            # Its pool's idle connections died with it: a new pool starts clean once the
            # replica is back, where the old one would check each dead one in turn.
            discard_pool(alias)
            logger.warning("replica %s failed mid-query (%s); reading elsewhere", alias, exc)
        else:
            logger.info("replica %s cancelled a read (%s); retrying on primary", alias, exc)
        stats.count_fallback(alias)
        if primary_reachable(settings, clock.monotonic()):
            try:
                stats.count_read(settings.primary, stats.REASON_FALLBACK)
                rerun(settings.primary, context, sql, params, many)
                return None
            except (OperationalError, InterfaceError) as primary_exc:
                if not _connection_lost(settings.primary):
                    raise
                # The primary failed too (a failover under way): any standby that may answer.
                primary_health().record_failure(primary_exc)
                close_quietly(settings.primary)
        allowed, need = _elsewhere(state)
        other = last_resort_replica(settings, state, need) if allowed else None
        if other is None:
            # Nothing else may answer: the primary's own error (or its wait for a new one).
            stats.count_read(settings.primary, stats.REASON_FALLBACK)
            rerun(settings.primary, context, sql, params, many)
            return None
        stats.count_read(other, stats.REASON_LAST_RESORT)
        rerun(other, context, sql, params, many)
        return None


def primary_read_fallback(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    try:
        return execute(sql, params, many, context)
    except (OperationalError, InterfaceError) as exc:
        primary = context["connection"]
        alias: str = primary.alias
        if (
            primary.in_atomic_block
            or not isinstance(sql, str)
            or is_write_sql(sql)
            or not _connection_lost(alias)
            or _server_side(context)
        ):
            raise
        state = current_state()
        allowed, need = _elsewhere(state)
        if not allowed:
            raise
        settings = get_settings()
        primary_health().record_failure(exc)
        close_quietly(alias)
        replica = last_resort_replica(settings, state, need)
        if replica is None:
            raise
        logger.warning(
            "primary %s failed mid-read (%s); read from replica %s as a last resort",
            alias,
            exc,
            replica,
        )
        stats.count_read(replica, stats.REASON_LAST_RESORT)
        rerun(replica, context, sql, params, many)
        return None
