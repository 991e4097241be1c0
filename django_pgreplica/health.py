"""Per-process health of each replica: a circuit breaker plus a cached probe.

The router asks :meth:`ReplicaHealth.usable` on every read; that is attribute reads and a
clock call. A probe query runs at most once per HEALTH_CHECK_INTERVAL per replica per
process, inline on the calling thread's own connection (no background threads: they do not
survive forking servers and workers). While one thread probes, others use the last result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.core.signals import setting_changed
from django.db import DatabaseError, connections

from .breaker import CircuitBreaker, CircuitState
from .conf import Settings, get_settings
from .lsn import parse_lsn

logger = logging.getLogger("django_pgreplica.health")

Clock = Callable[[], float]

# Lag is 0 when everything received has been replayed: on an idle primary
# now() - pg_last_xact_replay_timestamp() keeps growing although nothing is missing.
PROBE_SQL = """
SELECT pg_is_in_recovery(),
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE
         WHEN NOT pg_is_in_recovery() THEN NULL
         WHEN pg_last_wal_receive_lsn() IS NOT NULL
              AND pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) <= 0
           THEN 0.0
         ELSE GREATEST(0.0, EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()))
       END::float8
"""
REPLAY_LSN_SQL = "SELECT pg_last_wal_replay_lsn()::text"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    checked_at: float
    in_recovery: bool | None = None
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    lag_seconds: float | None = None
    error: str | None = None


def evaluate(probe: ProbeResult | None, max_lag_seconds: float | None) -> str | None:
    """Why a replica with this probe result may not serve reads, or None if it may."""
    if probe is None:
        return None  # not probed yet: the connection attempt itself is the first check
    if not probe.ok:
        return f"unreachable: {probe.error}"
    if not probe.in_recovery:
        return "promoted: not in recovery"
    if max_lag_seconds is not None and (probe.lag_seconds or 0.0) > max_lag_seconds:
        return f"lagging {probe.lag_seconds:.1f}s > {max_lag_seconds:g}s"
    return None


class ReplicaHealth:
    def __init__(self, alias: str, settings: Settings, clock: Clock = time.monotonic) -> None:
        self.alias = alias
        self.clock = clock
        self.breaker = CircuitBreaker(settings.failure_threshold, settings.reset_timeout)
        self.interval = settings.health_check_interval
        self.max_lag = settings.max_lag_seconds
        self.last: ProbeResult | None = None
        self.replay_lsn = 0  # highest replay position seen; only ever grows
        self._probe_lock = threading.Lock()
        self._reported: str | None = None
        self._ok_until = 0.0  # usable without further checks until this monotonic time

    # -- decisions -----------------------------------------------------------------------
    def usable(self, now: float) -> bool:
        """May this replica serve a read now? Probes first when a probe is due."""
        if self._ok_until > now:
            return True  # the hot path: healthy at the last probe, next probe not due
        state = self.breaker.state(now)
        if state is CircuitState.OPEN:
            return False
        if state is CircuitState.HALF_OPEN:
            # The single trial of a half-open circuit is a probe, never a user's read.
            if not self.breaker.allow(now):
                return False
            if not self.probe():
                self.breaker.release_trial()  # nobody probed: the next caller may
                return False
        elif self.last is None or now - self.last.checked_at >= self._recheck_interval():
            self.probe()
        if self.breaker.state(now) is not CircuitState.CLOSED:
            return False
        return self.reason() is None

    def reason(self) -> str | None:
        return evaluate(self.last, self.max_lag)

    def _recheck_interval(self) -> float:
        """A lagging replica is probed again sooner: right after an idle spell the first
        write makes ``now() - last replayed commit`` look like minutes for a few ms."""
        last = self.last
        if last is not None and last.ok and last.in_recovery and self.reason() is not None:
            return self.interval / 4
        return self.interval

    def replayed(self, lsn: int, refresh: bool = True) -> bool:
        """Has this replica replayed past ``lsn``? Asks it once more when the cache says no."""
        if self.replay_lsn >= lsn:
            return True
        if refresh:
            self._refresh_replay_lsn()
        return self.replay_lsn >= lsn

    # -- outcomes ------------------------------------------------------------------------
    def record_failure(self, error: BaseException | str) -> None:
        now = self.clock()
        message = one_line(error)
        self._ok_until = 0.0
        self.last = ProbeResult(ok=False, checked_at=now, error=message)
        if self.breaker.record_failure(now):
            logger.warning(
                "replica %s: circuit opened after %d failures (%s); reads go elsewhere for %gs",
                self.alias,
                self.breaker.failures,
                message,
                self.breaker.reset_timeout,
            )
        else:
            logger.info("replica %s: failure %d (%s)", self.alias, self.breaker.failures, message)

    def record_probe(self, result: ProbeResult) -> None:
        self.last = result
        if result.replay_lsn is not None and result.replay_lsn > self.replay_lsn:
            self.replay_lsn = result.replay_lsn
        if self.breaker.record_success(result.checked_at):
            logger.info("replica %s: circuit closed, serving reads again", self.alias)
        reason = self.reason()
        self._ok_until = result.checked_at + self.interval if reason is None else 0.0
        if reason != self._reported:
            self._reported = reason
            if reason is None:
                logger.info("replica %s: eligible for reads", self.alias)
            elif reason.startswith("promoted"):
                logger.error("replica %s: %s; it gets no reads", self.alias, reason)
            else:
                logger.warning("replica %s: %s; it gets no reads", self.alias, reason)

    # -- I/O -----------------------------------------------------------------------------
    def probe(self) -> bool:
        """Query the replica and record the result; False when no probe could run here."""
        if not self._probe_lock.acquire(blocking=False):
            return False  # another thread is probing; use the last result
        try:
            try:
                row = fetch_one(self.alias, PROBE_SQL)
            except SynchronousOnlyOperation:
                return False  # on the event loop (aiterator()): no I/O here, says nothing
            except Exception as exc:  # any failure to reach the replica counts
                self.record_failure(exc)
                return True
            in_recovery, receive, replay, lag = row
            self.record_probe(
                ProbeResult(
                    ok=True,
                    checked_at=self.clock(),
                    in_recovery=bool(in_recovery),
                    receive_lsn=parse_lsn(receive),
                    replay_lsn=parse_lsn(replay),
                    lag_seconds=None if lag is None else float(lag),
                )
            )
            return True
        finally:
            self._probe_lock.release()

    def _refresh_replay_lsn(self) -> None:
        try:
            (replay,) = fetch_one(self.alias, REPLAY_LSN_SQL)
        except SynchronousOnlyOperation:
            return
        except Exception as exc:
            self.record_failure(exc)
            return
        lsn = parse_lsn(replay)
        if lsn is not None and lsn > self.replay_lsn:
            self.replay_lsn = lsn


def raw_rows(alias: str, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the thread's connection to ``alias``, below the ORM.

    The raw cursor skips the execute wrappers, so a failing probe is seen as a failure
    rather than being rerouted to the primary, and nothing is routed. A broken connection
    is closed so the next attempt reconnects.
    """
    conn = connections[alias]
    try:
        conn.ensure_connection()
        assert conn.connection is not None
        with conn.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]
    except Exception:
        close_quietly(alias)
        raise


def fetch_one(alias: str, sql: str) -> tuple[Any, ...]:
    """The single row of ``sql`` (see :func:`raw_rows`)."""
    rows = raw_rows(alias, sql)
    if not rows:  # pragma: no cover - these queries always return a row
        raise DatabaseError(f"{alias}: {sql.split()[0]} returned no row")
    return rows[0]


def close_quietly(alias: str) -> None:
    conn = connections[alias]
    try:
        conn.close()
    except Exception:
        # A dead socket can fail to close; drop it so the next use reconnects.
        conn.connection = None


def one_line(error: BaseException | str) -> str:
    """The first line of an error, for logs and reports."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].strip()


class HealthRegistry:
    """One :class:`ReplicaHealth` per replica alias, for this process."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._items: dict[str, ReplicaHealth] = {}
        self._lock = threading.Lock()

    def get(self, alias: str) -> ReplicaHealth:
        try:
            return self._items[alias]
        except KeyError:
            with self._lock:
                item = self._items.get(alias)
                if item is None:
                    item = ReplicaHealth(alias, get_settings(), self.clock)
                    self._items[alias] = item
                return item

    def snapshot(self) -> dict[str, ReplicaHealth]:
        return dict(self._items)

    def reset(self) -> None:
        with self._lock:
            self._items.clear()


registry = HealthRegistry()


def get_health(alias: str) -> ReplicaHealth:
    return registry.get(alias)


def circuit_state(alias: str) -> CircuitState:
    """The circuit state of ``alias`` in this process (CLOSED if never used)."""
    item = registry.snapshot().get(alias)
    return CircuitState.CLOSED if item is None else item.breaker.state(registry.clock())


def _reset_on_change(**kwargs: Any) -> None:
    if kwargs.get("setting") in ("PGREPLICA", "DATABASES"):
        registry.reset()


setting_changed.connect(_reset_on_change, dispatch_uid="django_pgreplica.health.reset")
