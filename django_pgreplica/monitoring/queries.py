"""The SQL of replication monitoring, run below the ORM, turned into observations.

Queries go through a :class:`QueryRunner`; the default one uses Django's connection for
the alias (its HOST, PORT, USER and ``OPTIONS["connect_timeout"]``) with a raw cursor, so
the router and its fallback wrappers are not involved and a dead server fails fast with the
alias's own timeout. Every failure becomes ``reachable=False`` with a one-line error.

Privileges: run as a superuser or as a role with ``pg_monitor``::

    CREATE ROLE monitor LOGIN PASSWORD '...';
    GRANT pg_monitor TO monitor;       -- on the primary; replicas get it through WAL

Without it PostgreSQL hides most of ``pg_stat_replication`` and ``pg_stat_wal_receiver``
(the report then says so in its audit); ``pg_replication_slots``, ``pg_settings`` and the
replica-side probe need no grant.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
from django.db import InterfaceError, OperationalError, connections

from ..conf import get_settings
from ..db import observing, one_line, raw_rows
from ..health.probe import PROBE_SQL
from ..lsn import parse_lsn
from .types import (
    PrimaryObservation,
    ReplicaObservation,
    ServerSetting,
    ServerSettings,
    SlotRow,
    StandbyRow,
    WalReceiver,
)

logger = logging.getLogger("django_pgreplica.monitoring")

Row = tuple[Any, ...]

# Raw cursors raise psycopg's errors; ensure_connection() raises Django's wrappers.
_CONNECTION_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


class QueryRunner(Protocol):
    """Runs ``sql`` on the server behind ``alias`` and returns all rows."""

    def __call__(self, alias: str, sql: str, params: Sequence[Any] | None = None) -> list[Row]: ...


def django_runner(alias: str, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
    """Query through the raw psycopg connection of ``alias`` (or of its monitoring alias).

    A connection that was already open may have died since (a restarted server): it is
    replaced and the query tried once more, so a long ``--watch`` does not report a
    healthy server as down. Any failure closes the connection for the next attempt.
    """
    alias = monitoring_alias(alias)
    conn = connections[alias]
    reused = conn.connection is not None
    with observing():  # a server that is down is reported, not waited for
        try:
            return raw_rows(alias, sql, params)
        except _CONNECTION_ERRORS as exc:
            if not reused:
                raise
            logger.debug("%s: stale connection (%s); reconnecting", alias, one_line(exc))
        return raw_rows(alias, sql, params)


def monitoring_alias(alias: str) -> str:
    """The alias monitoring connects with for ``alias``: its MONITORING_DATABASES entry
    (the same server as the monitoring role), else ``alias`` itself."""
    return get_settings().monitoring_databases.get(alias, alias)


# --- SQL ---------------------------------------------------------------------------------

PRIMARY_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END,
       host(inet_server_addr()) || ':' || inet_server_port()
"""

SYSTEM_IDENTIFIER_SQL = "SELECT system_identifier FROM pg_control_system()"

# lag_bytes from WAL positions stays right while replay is paused. replay_lag is as of the
# standby's last reply (sent every wal_receiver_status_interval while nothing arrives), so
# its age comes along to extrapolate a stuck replay.
STANDBYS_SQL = """
SELECT pid, application_name, host(client_addr), client_port, state, sync_state,
       sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
       EXTRACT(EPOCH FROM write_lag)::float8,
       EXTRACT(EPOCH FROM flush_lag)::float8,
       EXTRACT(EPOCH FROM replay_lag)::float8,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
       GREATEST(0.0, EXTRACT(EPOCH FROM clock_timestamp() - reply_time))::float8
FROM pg_stat_replication
ORDER BY application_name, pid
"""

SLOTS_SQL = """
SELECT slot_name, slot_type, active, active_pid, restart_lsn::text, wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, safe_wal_size
FROM pg_replication_slots
ORDER BY slot_name
"""

# The router's own probe (same lag definition), plus what matching and evaluation need.
REPLICA_SQL = f"""
SELECT p.in_recovery, p.receive_lsn, p.replay_lsn, p.lag_seconds,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
       host(inet_server_addr()),
       current_setting('cluster_name'),
       current_setting('primary_slot_name', true),
       w.pid, w.status, w.slot_name, w.sender_host, w.sender_port, w.conninfo,
       w.flushed_lsn::text,
       CASE WHEN pg_wal_lsn_diff(p.receive_lsn::pg_lsn, p.replay_lsn::pg_lsn) > 0
            THEN GREATEST(0.0, EXTRACT(EPOCH FROM clock_timestamp() - w.latest_end_time))
       END::float8
FROM ({PROBE_SQL.strip().rstrip(";")})
     AS p(in_recovery, receive_lsn, replay_lsn, lag_seconds, timeline, started_at)
LEFT JOIN pg_stat_wal_receiver AS w ON true
"""

SETTINGS_SQL = "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)"

PRIMARY_SETTINGS = (
    "wal_level",
    "max_wal_senders",
    "max_replication_slots",
    "wal_keep_size",
    "max_slot_wal_keep_size",
    "synchronous_commit",
    "synchronous_standby_names",
    "max_connections",
    "max_worker_processes",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)
REPLICA_SETTINGS = (
    "hot_standby",
    "hot_standby_feedback",
    "max_standby_streaming_delay",
    "max_standby_archive_delay",
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


# --- observing ---------------------------------------------------------------------------


def observe_primary(alias: str, run: QueryRunner = django_runner) -> PrimaryObservation:
    try:
        ((in_recovery, current, server),) = run(alias, PRIMARY_SQL)
        if in_recovery:
            # Not a primary at all: pg_current_wal_lsn() and the lag arithmetic would fail.
            return PrimaryObservation(
                alias,
                reachable=True,
                in_recovery=True,
                system_identifier=_system_identifier(alias, run),
                settings=_settings(alias, run, PRIMARY_SETTINGS),
            )
        standbys = tuple(_standby(row) for row in run(alias, STANDBYS_SQL))
        slots = tuple(_slot(row) for row in run(alias, SLOTS_SQL))
    except Exception as exc:
        logger.debug("primary %s unreachable: %s", alias, exc)
        return PrimaryObservation(alias, reachable=False, error=one_line(exc))
    return PrimaryObservation(
        alias,
        reachable=True,
        in_recovery=False,
        server=server,
        current_lsn=parse_lsn(current),
        system_identifier=_system_identifier(alias, run),
        standbys=standbys,
        slots=slots,
        settings=_settings(alias, run, PRIMARY_SETTINGS),
    )


def observe_replica(alias: str, run: QueryRunner = django_runner) -> ReplicaObservation:
    try:
        rows = run(alias, REPLICA_SQL)
    except Exception as exc:
        logger.debug("replica %s unreachable: %s", alias, exc)
        return ReplicaObservation(alias, reachable=False, error=one_line(exc))
    (
        in_recovery,
        receive,
        replay,
        lag,
        paused,
        server_addr,
        cluster_name,
        slot_setting,
        receiver_pid,
        receiver_status,
        receiver_slot,
        sender_host,
        sender_port,
        conninfo,
        flushed,
        unreplayed_age,
    ) = rows[0]
    receiver = None
    if receiver_pid is not None:
        receiver = WalReceiver(
            # Without pg_monitor every column but pid is NULL; status never is otherwise.
            visible=receiver_status is not None,
            status=receiver_status,
            slot_name=receiver_slot or None,
            sender_host=sender_host,
            sender_port=sender_port,
            application_name=receiver_application_name(conninfo, cluster_name),
            flushed_lsn=parse_lsn(flushed),
        )
    return ReplicaObservation(
        alias,
        reachable=True,
        in_recovery=bool(in_recovery),
        receive_lsn=parse_lsn(receive),
        replay_lsn=parse_lsn(replay),
        lag_seconds=None if lag is None else float(lag),
        unreplayed_age=None if unreplayed_age is None else float(unreplayed_age),
        replay_paused=paused,
        receiver=receiver,
        server_addr=server_addr,
        cluster_name=cluster_name or None,
        primary_slot_name=slot_setting or None,
        system_identifier=_system_identifier(alias, run),
        settings=_settings(alias, run, REPLICA_SETTINGS),
    )


_CONNINFO_RE = re.compile(
    r"(?:^|\s)(application_name|fallback_application_name)=('(?:[^'\\]|\\.)*'|\S+)"
)


def receiver_application_name(conninfo: str | None, cluster_name: str | None) -> str | None:
    """The application_name a WAL receiver shows in the primary's ``pg_stat_replication``.

    libpq takes ``application_name`` from ``primary_conninfo``, else the
    ``fallback_application_name`` the receiver sets: ``cluster_name``, else "walreceiver".
    ``conninfo`` is None when hidden (no pg_monitor): ``cluster_name`` is then the best
    guess, right unless ``primary_conninfo`` names an application_name of its own.
    """
    if conninfo is None:
        return cluster_name or "walreceiver"
    found: dict[str, str] = {}
    for key, value in _CONNINFO_RE.findall(conninfo):
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.setdefault(key, value)
    return (
        found.get("application_name")
        or found.get("fallback_application_name")
        or cluster_name
        or "walreceiver"
    )


def _standby(row: Row) -> StandbyRow:
    return StandbyRow(
        pid=int(row[0]),
        application_name=str(row[1] or ""),
        client_addr=row[2],
        client_port=row[3],
        state=row[4],
        sync_state=row[5],
        sent_lsn=parse_lsn(row[6]),
        write_lsn=parse_lsn(row[7]),
        flush_lsn=parse_lsn(row[8]),
        replay_lsn=parse_lsn(row[9]),
        write_lag=_float(row[10]),
        flush_lag=_float(row[11]),
        replay_lag=_float(row[12]),
        lag_bytes=None if row[13] is None else max(0, int(row[13])),
        reply_age=_float(row[14]),
    )


def _slot(row: Row) -> SlotRow:
    return SlotRow(
        slot_name=str(row[0]),
        slot_type=str(row[1]),
        active=bool(row[2]),
        active_pid=row[3],
        restart_lsn=parse_lsn(row[4]),
        wal_status=row[5],
        retained_bytes=None if row[6] is None else max(0, int(row[6])),
        safe_wal_size=None if row[7] is None else int(row[7]),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _system_identifier(alias: str, run: QueryRunner) -> int | None:
    """Optional: a hardened server may revoke pg_control_system() from PUBLIC."""
    try:
        rows = run(alias, SYSTEM_IDENTIFIER_SQL)
    except Exception as exc:
        logger.debug("%s: no system identifier (%s)", alias, one_line(exc))
        return None
    return None if not rows or rows[0][0] is None else int(rows[0][0])


def _settings(alias: str, run: QueryRunner, names: Sequence[str]) -> ServerSettings:
    """Optional, for the configuration audit only: an error leaves it empty."""
    try:
        rows = run(alias, SETTINGS_SQL, [list(names)])
    except Exception as exc:
        logger.debug("%s: settings unreadable (%s)", alias, one_line(exc))
        return {}
    return {str(name): ServerSetting(str(name), str(value), unit) for name, value, unit in rows}
