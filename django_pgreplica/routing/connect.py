"""Opening a connection while routing, so a dead server costs a detour, not an error.

Django would otherwise connect when the query runs, after the router has answered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.db import connections

from ..conf import Settings
from ..consistency import RoutingState
from ..db import close_quietly, not_waiting, pool_refused
from ..health import ReplicaHealth, get_health, primary_health
from ..health.probe import server_key
from ..health.prober import check_now
from ..health.promoted import leave_promoted, reports_primary
from . import stats
from .pool import bounded_by_router, busy_wait, discard_pool

logger = logging.getLogger("django_pgreplica.router")


def _open(alias: str) -> Any:
    """Connect ``alias`` now unless it is connected; returns its raw connection. A
    persistent connection (CONN_MAX_AGE) is taken as it is, unless CONN_HEALTH_CHECKS asks
    for a check at its first use in this request: that check runs here, for the same
    reason. Raises what connecting raises."""
    conn = connections[alias]  # looked up once: asgiref's Local is the read's costliest step
    pending_check = getattr(conn, "health_check_enabled", False) and not getattr(
        conn, "health_check_done", True
    )
    if conn.connection is not None and not pending_check:
        return conn.connection
    conn.close_if_health_check_failed()
    conn.ensure_connection()
    return conn.connection


class PromotedReplica(Exception):
    """The one server of a replica alias said, when it connected or after its last query,
    that it is out of recovery: it was promoted since its last probe."""


def _open_replica(health: ReplicaHealth) -> None:
    raw = _open(health.alias)
    if health.servers > 1:
        server = None if raw is None else server_key(health.alias, raw)
        # A kept connection on a member promoted under it: the server said so after its
        # last query, or this process's primary connection reached that member.
        if server is not None and (reports_primary(raw) or server == primary_health().server):
            health.promoted.add(server)
    elif raw is not None and health.trusts_reports and reports_primary(raw):
        # PostgreSQL 14+ reports in_hot_standby at connection start: a replica promoted
        # since its last probe is known before a read lands on it, at no cost.
        raise PromotedReplica(health.alias)
    if health.promoted:  # a member was promoted: is this kept connection on it?
        leave_promoted(health)


def _promoted(health: ReplicaHealth) -> bool:
    """The alias's server says it is a primary now: a probe on this connection checks and
    records it (the alias then gets no reads, in this process and, with CACHE, the
    fleet). Not a failure: the server answers. False when the probe found a standby."""
    if not health.probe():  # another thread is probing it: skip it for this read
        return True
    last = health.last
    if last is not None and last.ok and last.in_recovery:
        health.trusts_reports = False
        logger.warning(
            "replica %s: reported in_hot_standby=off but is in recovery (a pooler's stale "
            "report?); that report is ignored from now on",
            health.alias,
        )
        return False
    return True


def connectable(alias: str, state: RoutingState) -> bool:
    """Can the replica ``alias`` be reached now? A failure is recorded against it."""
    health = get_health(alias)
    try:
        _open_replica(health)
    except SynchronousOnlyOperation:
        # Asked from the event loop (aiterator()): the query connects later in a worker
        # thread. Nothing is known about the replica, so nothing is recorded.
        return True
    except PromotedReplica:
        if not _promoted(health):
            return True
        state.failed.add(alias)  # this request reads elsewhere
        return False
    except Exception as exc:
        if not pool_refused(exc):
            _record_failure(health, exc)
        elif _wait_for_pool(health):
            return True
        state.failed.add(alias)
        stats.count_fallback(alias)
        logger.warning("replica %s: connection failed (%s); reading elsewhere", alias, exc)
        return False
    return True


def _record_failure(health: ReplicaHealth, error: BaseException) -> None:
    health.record_failure(error)
    close_quietly(health.alias)
    discard_pool(health.alias)  # its successor connects at once when the replica is back


def _wait_for_pool(health: ReplicaHealth) -> bool:
    """The alias's pool handed out no connection in time. That alone does not say why:
    every connection may be in use (a busy process; the server is fine) or none can be
    made (the server is down). A probe on a connection of its own, in the background,
    tells which, while the read waits for the pool as long as psycopg_pool would by
    default. True once it has a connection; False when the probe found the server
    failed (reads go elsewhere, the pool is replaced) or the wait ran out."""
    check_now(health)  # its result is recorded on health
    options = connections[health.alias].settings_dict.get("OPTIONS") or {}
    deadline = time.monotonic() + busy_wait(options, bounded_by_router(health.alias))
    while not health.suspect and time.monotonic() < deadline:
        try:
            _open_replica(health)
            return True
        except SynchronousOnlyOperation:
            return True
        except PromotedReplica:
            return not _promoted(health)
        except Exception as exc:
            if not pool_refused(exc):
                _record_failure(health, exc)
                return False
    if health.suspect:  # the probe recorded the failure
        close_quietly(health.alias)
        discard_pool(health.alias)
    else:
        logger.warning(
            "replica %s: every pooled connection stayed in use; a pool's max_size below "
            "the threads of a process makes reads queue for one",
            health.alias,
        )
    return False


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
