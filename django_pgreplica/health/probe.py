"""The probe query a replica answers, and running it (the I/O half of replica health)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.db import connections
from psycopg import sql

from ..db import fetch_one, raw_rows
from ..lsn import format_lsn, parse_lsn
from .verdict import ProbeResult

# WAIT FOR LSN (PostgreSQL 19) waits on the server; older servers are polled, starting
# fast (replay is usually a millisecond behind) and backing off.
WAIT_FOR_LSN_VERSION = 190000
POLL_FIRST, POLL_MAX = 0.001, 0.01

# Lag is 0 while the WAL receiver is connected and everything received has been replayed:
# on an idle primary now() - pg_last_xact_replay_timestamp() keeps growing although nothing
# is missing. Without a receiver (the primary is down or the replica is cut off from it)
# nothing proves the replica current, so its lag is the age of its last replayed commit;
# last-resort reads still use it while the primary is unreachable. pg_stat_wal_receiver
# shows its pid to any role.
PROBE_SQL = """
SELECT pg_is_in_recovery(),
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE
         WHEN NOT pg_is_in_recovery() THEN NULL
         WHEN pg_last_wal_receive_lsn() IS NOT NULL
              AND pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) <= 0
              AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver)
           THEN 0.0
         ELSE GREATEST(0.0, EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()))
       END::float8
"""
REPLAY_LSN_SQL = "SELECT pg_last_wal_replay_lsn()::text"


def run_probe(alias: str, checked_at: float) -> ProbeResult:
    """Ask ``alias`` for its recovery state, positions and lag. Raises what the driver
    raises when the replica cannot answer."""
    return _result(fetch_one(alias, PROBE_SQL), checked_at)


def _result(row: tuple[Any, ...], checked_at: float) -> ProbeResult:
    in_recovery, receive, replay, lag = row
    return ProbeResult(
        ok=True,
        checked_at=checked_at,
        in_recovery=bool(in_recovery),
        receive_lsn=parse_lsn(receive),
        replay_lsn=parse_lsn(replay),
        lag_seconds=None if lag is None else float(lag),
    )


# The background prober's connection attempt: the alias's own connect_timeout, else this.
PROBE_CONNECT_TIMEOUT = 5


def run_probe_on_own_connection(alias: str, checked_at: float) -> ProbeResult:
    """:func:`run_probe` on a short-lived connection of its own: not the calling thread's
    Django connection and never a pool's (the background prober of a failed replica)."""
    params = connections[alias].get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):  # Django's, not needed
        params.pop(key, None)
    params.setdefault("connect_timeout", PROBE_CONNECT_TIMEOUT)
    with psycopg.connect(**params, autocommit=True) as conn:
        row = conn.execute(PROBE_SQL).fetchone()
    assert row is not None
    return _result(row, checked_at)


def read_replay_lsn(alias: str) -> int | None:
    """The replica's replay position now (None: it has replayed nothing yet)."""
    (replay,) = fetch_one(alias, REPLAY_LSN_SQL)
    return None if replay is None else parse_lsn(str(replay))


def wait_for_replay(alias: str, lsn: int, timeout: float) -> int | None:
    """Wait up to ``timeout`` seconds (real time: replay is) for ``alias`` to replay
    ``lsn``, on its own connection in autocommit; returns its replay position then."""
    conn = connections[alias]
    conn.ensure_connection()
    raw = conn.connection
    assert raw is not None
    if raw.info.server_version >= WAIT_FOR_LSN_VERSION:
        statement = sql.SQL("WAIT FOR LSN {} WITH (TIMEOUT {}, NO_THROW)").format(
            sql.Literal(format_lsn(lsn)), sql.Literal(f"{max(1, round(timeout * 1000))}ms")
        )
        raw_rows(alias, statement.as_string(raw))
        return read_replay_lsn(alias)
    deadline = time.monotonic() + timeout
    pause = POLL_FIRST
    while True:
        position = read_replay_lsn(alias)
        left = deadline - time.monotonic()
        if (position is not None and position >= lsn) or left <= 0:
            return position
        time.sleep(min(pause, left))
        pause = min(pause * 2, POLL_MAX)
