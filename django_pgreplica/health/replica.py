"""Per-process health of each replica: a circuit breaker plus a cached probe.

The router asks :meth:`ReplicaHealth.usable` on every read: while the last probe is fresh
and good that is one comparison (the fast path). A probe query runs at most once per
HEALTH_CHECK_INTERVAL per replica per process, inline on the calling thread's own
connection; while one thread probes, others use the last result. Time comes from
:mod:`django_pgreplica.clock`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.core.signals import setting_changed

from .. import clock
from ..conf import Settings, get_settings
from ..db import one_line
from .breaker import CircuitBreaker, CircuitState
from .probe import read_replay_lsn, run_probe
from .verdict import ProbeResult, probe_reason

logger = logging.getLogger("django_pgreplica.health")


class ReplicaHealth:
    def __init__(self, alias: str, settings: Settings) -> None:
        self.alias = alias
        self.settings = settings  # the router drops a health built for older settings
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
        """May this replica serve a read now? Probes first when a probe is due.

        The first line is the router's fast path: healthy at the last probe and the next
        probe not due yet.
        """
        if self._ok_until > now:
            return True
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
        return probe_reason(self.last, self.max_lag)

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
        now = clock.monotonic()
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
                result = run_probe(self.alias, clock.monotonic())
            except SynchronousOnlyOperation:
                return False  # on the event loop (aiterator()): no I/O here, says nothing
            except Exception as exc:  # any failure to reach the replica counts
                self.record_failure(exc)
                return True
            self.record_probe(result)
            return True
        finally:
            self._probe_lock.release()

    def _refresh_replay_lsn(self) -> None:
        try:
            lsn = read_replay_lsn(self.alias)
        except SynchronousOnlyOperation:
            return
        except Exception as exc:
            self.record_failure(exc)
            return
        if lsn is not None and lsn > self.replay_lsn:
            self.replay_lsn = lsn


class HealthRegistry:
    """One :class:`ReplicaHealth` per replica alias, for this process."""

    def __init__(self) -> None:
        self._items: dict[str, ReplicaHealth] = {}
        self._lock = threading.Lock()

    def get(self, alias: str) -> ReplicaHealth:
        try:
            return self._items[alias]
        except KeyError:
            with self._lock:
                item = self._items.get(alias)
                if item is None:
                    item = ReplicaHealth(alias, get_settings())
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


def replayed_everywhere(aliases: tuple[str, ...], lsn: int) -> bool:
    """Has every replica replayed ``lsn``, as far as this process knows (no query)?"""
    return all(registry.get(alias).replay_lsn >= lsn for alias in aliases)


def circuit_state(alias: str) -> CircuitState:
    """The circuit state of ``alias`` in this process (CLOSED if never used)."""
    item = registry.snapshot().get(alias)
    return CircuitState.CLOSED if item is None else item.breaker.state(clock.monotonic())


def _reset_on_change(**kwargs: Any) -> None:
    if kwargs.get("setting") in ("PGREPLICA", "DATABASES"):
        registry.reset()


setting_changed.connect(_reset_on_change, dispatch_uid="django_pgreplica.health.reset")
