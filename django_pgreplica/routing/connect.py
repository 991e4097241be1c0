"""Opening a connection while routing, so a dead server costs a detour, not an error.

Django would otherwise connect when the query runs, after the router has answered.
"""

from __future__ import annotations

import logging

from django.core.exceptions import SynchronousOnlyOperation
from django.db import connections

from ..conf import Settings
from ..consistency import RoutingState
from ..db import close_quietly, not_waiting
from ..health import get_health, primary_health
from . import stats
from .pool import discard_pool

logger = logging.getLogger("django_pgreplica.router")


def _open(alias: str) -> None:
    """Connect ``alias`` now unless it is connected. A persistent connection (CONN_MAX_AGE)
    is taken as it is, unless CONN_HEALTH_CHECKS asks for a check at its first use in this
    request: that check runs here, for the same reason. Raises what connecting raises."""
    conn = connections[alias]
    pending_check = getattr(conn, "health_check_enabled", False) and not getattr(
        conn, "health_check_done", True
    )
    if conn.connection is not None and not pending_check:
        return
    conn.close_if_health_check_failed()
    conn.ensure_connection()


def connectable(alias: str, state: RoutingState) -> bool:
    """Can the replica ``alias`` be reached now? A failure is recorded against it."""
    try:
        _open(alias)
    except SynchronousOnlyOperation:
        # Asked from the event loop (aiterator()): the query connects later in a worker
        # thread. Nothing is known about the replica, so nothing is recorded.
        return True
    except Exception as exc:
        get_health(alias).record_failure(exc)
        close_quietly(alias)
        discard_pool(alias)  # its successor connects at once when the replica is back
        state.failed.add(alias)
        stats.count_fallback(alias)
        logger.warning("replica %s: connection failed (%s); reading elsewhere", alias, exc)
        return False
    return True


def primary_reachable(settings: Settings, now: float) -> bool:
    """Can the primary be reached now? A failure is remembered for HEALTH_CHECK_INTERVAL,
    so the reads after it do not each pay a connection attempt."""
    health = primary_health()
    if health.known_down(now):
        return False
    try:
        with not_waiting():  # a read has replicas to go to: no waiting for a new primary
            _open(settings.primary)
    except SynchronousOnlyOperation:
        return True
    except Exception as exc:
        health.record_failure(exc)
        close_quietly(settings.primary)
        return False
    health.record_success()
    return True
