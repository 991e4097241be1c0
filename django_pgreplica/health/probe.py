"""The probe query a replica answers, and running it (the I/O half of replica health)."""

from __future__ import annotations

from ..db import fetch_one
from ..lsn import parse_lsn
from .verdict import ProbeResult

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
    in_recovery, receive, replay, lag = fetch_one(alias, PROBE_SQL)
    return ProbeResult(
        ok=True,
        checked_at=checked_at,
        in_recovery=bool(in_recovery),
        receive_lsn=parse_lsn(receive),
        replay_lsn=parse_lsn(replay),
        lag_seconds=None if lag is None else float(lag),
    )


def read_replay_lsn(alias: str) -> int | None:
    """The replica's replay position now (None: it has replayed nothing yet)."""
    (replay,) = fetch_one(alias, REPLAY_LSN_SQL)
    return None if replay is None else parse_lsn(str(replay))
