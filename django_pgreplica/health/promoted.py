"""Kept connections on a member that was promoted after they were opened.

libpq checks ``target_session_attrs`` only when it connects, so a persistent connection
(CONN_MAX_AGE) or a pooled one of a multi-host replica alias stays on its member when
Patroni promotes it, and CONN_HEALTH_CHECKS passes there. A member is marked promoted
(``ReplicaHealth.promoted``) when a probe finds it out of recovery, when the server
reports so on a kept connection (:func:`reports_primary`), or when the primary alias
reached it. Then each thread's connection to that member is asked once, when a request
next picks the alias (:func:`leave_promoted`), and closed for good when it is on a
primary, so the reconnect reaches a standby. A connection opened after the promotion went
through libpq's check: asking it clears the mark.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import connections

from ..db import close_quietly
from .probe import server_key

if TYPE_CHECKING:
    from .replica import ReplicaHealth

logger = logging.getLogger("django_pgreplica.health")

# A pool may hand out several old connections in a row before a new one.
MAX_DROPS = 8


def drop_connection(alias: str) -> None:
    """Close the thread's connection to ``alias`` for good: a pooled one is closed before
    it goes back, so the pool replaces it instead of handing it out again."""
    raw = connections[alias].connection
    if raw is not None:
        try:
            raw.close()
        except Exception as exc:  # a dead socket: closing it is all that was wanted
            logger.debug("replica %s: closing a connection: %s", alias, exc)
    close_quietly(alias)


def reports_primary(raw: Any) -> bool:
    """Did the server say, after this connection's last query, that it is out of
    recovery? PostgreSQL 14+ reports ``in_hot_standby`` to the client whenever it changes
    (promotion), so a kept connection knows without a query of its own: Django's
    CONN_HEALTH_CHECKS and a pool's check run one before the request uses it."""
    try:
        return bool(raw.info.parameter_status("in_hot_standby") == "off")
    except Exception:  # a closed connection: reconnecting will tell
        return False


def _in_recovery(raw: Any) -> bool:
    with raw.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        row = cursor.fetchone()
    return bool(row and row[0])


def leave_promoted(health: ReplicaHealth) -> None:
    """Make sure the thread's connection to ``health``'s alias is not on a member found
    promoted (at most one query per kept connection on such a member, none when the
    server already reported it left recovery, none otherwise). Raises what reconnecting
    raises."""
    alias = health.alias
    conn = connections[alias]
    for _ in range(MAX_DROPS):
        raw = conn.connection
        if not health.promoted or raw is None or conn.in_atomic_block:
            return
        server = server_key(alias, raw)
        if server not in health.promoted:
            return
        # The server's own report after the last query (a probe's, a health check's)
        # settles it without asking; otherwise ask.
        if not reports_primary(raw):
            try:
                if _in_recovery(raw):
                    health.promoted.discard(server)  # a standby again (or libpq just checked)
                    return
            except Exception as exc:  # a broken connection is replaced all the same
                logger.debug("replica %s: asking %s: %s", alias, server, exc)
        logger.info(
            "replica %s: closing a kept connection on %s, which is not a standby now",
            alias,
            server,
        )
        drop_connection(alias)
        conn.ensure_connection()
