"""The probe query a replica answers, and running it (the I/O half of replica health)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.db import connections
from psycopg import sql

from ..db import fetch_one, members, raw_rows
from ..lsn import Position, format_lsn, parse_lsn
from .verdict import ProbeResult, ServerPosition

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
# The timeline it replays: what it receives when the role may see that (pg_monitor),
# else its last restartpoint's, which may still name the previous timeline for a while
# after a failover (then tokens from the new one go to the primary: never the wrong way).
TIMELINE_SQL = (
    "COALESCE((SELECT received_tli FROM pg_stat_wal_receiver),"
    " (SELECT timeline_id FROM pg_control_checkpoint()))"
)
# When its postmaster started: a server restarted since we last looked may have come back
# behind its old position, or on another timeline.
STARTED_SQL = "EXTRACT(EPOCH FROM pg_postmaster_start_time())::float8"

PROBE_SQL = f"""
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
       END::float8,
       {TIMELINE_SQL},
       {STARTED_SQL}
"""
REPLAY_POSITION_SQL = f"SELECT pg_last_wal_replay_lsn()::text, {TIMELINE_SQL}, {STARTED_SQL}"


def server_key(alias: str, raw: Any = None) -> str | None:
    """Which server ``alias``'s connection (``raw``, else the calling thread's) is on:
    ``host:port``. An alias with one host has one server, connected or not; a multi-host
    alias (libpq's comma-separated HOST/PORT, e.g. every Patroni member) is on whichever
    member its current connection reached, None while it has none."""
    db = connections[alias].settings_dict
    host, port = str(db.get("HOST") or ""), str(db.get("PORT") or "")
    if "," not in host and "," not in port:
        return f"{host}:{port}"
    if raw is None:
        raw = connections[alias].connection
    if raw is None:
        return None
    return f"{raw.info.host}:{raw.info.port}"


def server_count(alias: str) -> int:
    """How many servers ``alias`` may connect to (the hosts in its HOST)."""
    return max(1, len(members(alias)))


def run_probe(alias: str, checked_at: float) -> ProbeResult:
    """Ask ``alias`` for its recovery state, positions and lag. Raises what the driver
    raises when the replica cannot answer."""
    return _result(fetch_one(alias, PROBE_SQL), checked_at, server_key(alias))


def _result(row: tuple[Any, ...], checked_at: float, server: str | None) -> ProbeResult:
    in_recovery, receive, replay, lag, timeline, started_at = row
    return ProbeResult(
        ok=True,
        checked_at=checked_at,
        in_recovery=bool(in_recovery),
        receive_lsn=parse_lsn(receive),
        replay_lsn=parse_lsn(replay),
        lag_seconds=None if lag is None else float(lag),
        server=server,
        timeline=None if timeline is None else int(timeline),
        started_at=None if started_at is None else float(started_at),
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
        server = server_key(alias, conn)
    assert row is not None
    return _result(row, checked_at, server)


def read_position(alias: str) -> ServerPosition:
    """Where the replica's replay stands now, on the server the thread's connection is on."""
    replay, timeline, started_at = fetch_one(alias, REPLAY_POSITION_SQL)
    return ServerPosition(
        server=server_key(alias),
        position=None if replay is None else Position(parse_lsn(str(replay)), timeline),
        started_at=None if started_at is None else float(started_at),
    )


def wait_for_replay(alias: str, need: Position, timeout: float) -> ServerPosition:
    """Wait up to ``timeout`` seconds (real time: replay is) for ``alias`` to replay up to
    ``need``, on its own connection in autocommit; returns where it stands then."""
    conn = connections[alias]
    conn.ensure_connection()
    raw = conn.connection
    assert raw is not None
    if raw.info.server_version >= WAIT_FOR_LSN_VERSION:
        statement = sql.SQL("WAIT FOR LSN {} WITH (TIMEOUT {}, NO_THROW)").format(
            sql.Literal(format_lsn(need.lsn)), sql.Literal(f"{max(1, round(timeout * 1000))}ms")
        )
        raw_rows(alias, statement.as_string(raw))
        return read_position(alias)
    deadline = time.monotonic() + timeout
    pause = POLL_FIRST
    while True:
        found = read_position(alias)
        left = deadline - time.monotonic()
        if found.covers(need) or left <= 0:
            return found
        time.sleep(min(pause, left))
        pause = min(pause * 2, POLL_MAX)
