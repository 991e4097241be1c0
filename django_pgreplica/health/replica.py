"""Per-process health of each replica: a circuit breaker plus a cached probe.

The router asks :meth:`ReplicaHealth.usable` on every read: while the last probe is fresh
and good that is one comparison (the fast path). A replica that answered its last probe is
probed again at most once per HEALTH_CHECK_INTERVAL, inline on the calling thread's own
connection (one cheap query on a server known to answer). A replica that failed is never
probed on a user's request: it is *suspect* and :mod:`.prober` checks it in the background
every HEALTH_CHECK_INTERVAL on a short-lived connection of its own, so it serves reads again
as soon as it answers (after a hold-down if it flaps), however long it was down. Time
comes from :mod:`django_pgreplica.clock`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.core.signals import setting_changed

from .. import clock
from ..conf import Settings, get_settings
from ..db import one_line, pool_refused
from ..lsn import Position
from . import attempts
from .breaker import CircuitBreaker, CircuitState
from .probe import (
    read_position,
    run_probe,
    run_probe_on_own_connection,
    server_count,
    server_key,
    wait_for_replay,
)
from .prober import check_now, watch
from .promoted import leave_promoted
from .shared import sync
from .verdict import ProbeResult, ServerPosition, probe_reason

logger = logging.getLogger("django_pgreplica.health")


class ReplicaHealth:
    def __init__(
        self,
        alias: str,
        settings: Settings,
        on_suspect: Callable[[ReplicaHealth], None] = watch,
    ) -> None:
        self.alias = alias
        self.settings = settings  # the router drops a health built for older settings
        self.breaker = CircuitBreaker(
            settings.failure_threshold,
            settings.reset_timeout,
            hold_step=settings.health_check_interval,
            ramp_seconds=settings.ramp_seconds,
        )
        self.interval = settings.health_check_interval
        self.max_lag = settings.max_lag_seconds
        self.last: ProbeResult | None = None
        # Replay position of each server behind the alias (one, or every member of a
        # multi-host HOST), as last seen there: a token is checked against the server that
        # will answer. It grows while a server is up, but a restarted one may come back
        # behind it (crash recovery accepts reads from its minimum recovery point on) or on
        # another timeline: a failure forgets them, and every probe sets its server's.
        self.positions: dict[str, ServerPosition] = {}
        self.servers = server_count(alias)
        # Members of a multi-host alias found promoted (by a probe, the server's own report
        # or the primary alias): kept connections there are asked, and closed when on a
        # primary (see :mod:`.promoted`).
        self.promoted: set[str] = set()
        # False once a probe found a standby where the server's in_hot_standby report said
        # primary (a pooler replaying a stale report): the report is not looked at again.
        self.trusts_reports = True
        self._probe_lock = threading.Lock()
        self._reported: str | None = None
        self._ok_until = 0.0  # usable without further checks until this monotonic time
        # (where it stood, when): a replay wait ran out while the replica stood there
        self._stalled: tuple[ServerPosition, float] | None = None
        # Failed since it last answered (or held down after an outage): only the background
        # prober looks at it, never a user's request.
        self.suspect = False
        self.retired = False  # replaced after a settings change: its prober stops
        self._on_suspect = on_suspect  # starts the background prober (a seam for tests)
        self.changed_at = 0.0  # wall time it last became suspect or answered again
        # monotonic time of this process's last probe that found it fully caught up
        self._caught_up_at: float | None = None
        self.shared = settings.cache is not None

    # -- decisions -----------------------------------------------------------------------
    def usable(self, now: float) -> bool:
        """May this replica serve a read now? Probes first when a probe is due.

        The first line is the router's fast path: healthy at the last probe and the next
        probe not due yet.
        """
        if self._ok_until > now:
            return True
        if self.suspect:
            self._on_suspect(self)  # probed in the background until it answers
            return False
        last = self.last
        if last is None or now - last.checked_at >= self._recheck_interval():
            self.probe()
            if self.suspect:
                return False
        return self.reason() is None

    def weight(self, now: float) -> float:
        """The share of the reads meant for it this replica takes now (ramp after an outage)."""
        return self.breaker.weight(now)

    def reason(self) -> str | None:
        return probe_reason(self.last, self.max_lag)

    def _recheck_interval(self) -> float:
        """A lagging replica is probed again sooner: right after an idle spell the first
        write makes ``now() - last replayed commit`` look like minutes for a few ms."""
        last = self.last
        if last is not None and last.ok and last.in_recovery and self.reason() is not None:
            return self.interval / 4
        return self.interval

    def known_position(self) -> ServerPosition | None:
        """Where the server the thread's connection is on stood when last seen."""
        server = server_key(self.alias)
        return None if server is None else self.positions.get(server)

    def replayed(self, need: Position, refresh: bool = True) -> bool:
        """Has the server this alias's connection is on replayed up to ``need`` (on its
        timeline)? Asks it once more when what is known says no."""
        known = self.known_position()
        if known is not None and known.covers(need):
            return True
        if not refresh:
            return False
        found = self._read_position()
        return found is not None and found.covers(need)

    def replayed_everywhere(self, need: Position) -> bool:
        """Has every server behind the alias replayed up to ``need``, as last seen?"""
        positions = list(self.positions.values())
        return len(positions) >= self.servers and all(p.covers(need) for p in positions)

    def wait_replayed(self, need: Position, budget: float) -> tuple[float, bool]:
        """Wait up to ``budget`` seconds for the replica to replay up to ``need``: (seconds
        waited, replayed?). A replica whose last wait ran out and whose replay has not moved
        since (within HEALTH_CHECK_INTERVAL) is not waited for again: stuck, not slow."""
        stalled = self._stalled
        if (
            stalled is not None
            and self.known_position() == stalled[0]
            and clock.monotonic() - stalled[1] < self.interval
        ):
            return 0.0, False
        started = time.monotonic()
        try:
            found = wait_for_replay(self.alias, need, budget)
        except SynchronousOnlyOperation:
            return 0.0, False  # on the event loop: never block it
        except Exception as exc:
            self._record_error(exc)
            return time.monotonic() - started, False
        self._note(found)
        replayed = found.covers(need)
        self._stalled = None if replayed else (found, clock.monotonic())
        return time.monotonic() - started, replayed

    # -- outcomes ------------------------------------------------------------------------
    def record_failure(self, error: BaseException | str, *, shared: bool = True) -> None:
        """A failure seen here (``shared``: tell the other processes, when CACHE is set)."""
        now = clock.monotonic()
        message = one_line(error)
        self._ok_until = 0.0
        self._caught_up_at = None  # it may come back as something else (a restore, a clone)
        self.positions.clear()  # ... or behind where it was (see __init__)
        self.last = ProbeResult(ok=False, checked_at=now, error=message)
        first = not self.suspect
        self.suspect = True
        if first:
            self.changed_at = clock.wall()
            if shared and self.shared:
                sync.publish(self)
        if self.breaker.record_failure(now):
            hold = self.breaker.hold_down()
            logger.warning(
                "replica %s: circuit opened after %d failures (%s); reads go elsewhere until "
                "it answers a probe%s",
                self.alias,
                self.breaker.failures,
                message,
                f" (held out {hold:g}s: it failed again soon after recovering)" if hold else "",
            )
        elif first:
            logger.warning("replica %s: failed (%s); reads go elsewhere", self.alias, message)
        else:
            logger.info("replica %s: failure %d (%s)", self.alias, self.breaker.failures, message)
        self._on_suspect(self)

    def _record_error(self, exc: BaseException) -> bool:
        """A query on the thread's connection failed: record the failure (True). When the
        alias's pool only handed out no connection, that says nothing of the server (all
        in use, or none can be made): a probe on a connection of its own tells, and only
        its failure, or no answer within :data:`~.prober.PROBE_GRACE`, counts."""
        if pool_refused(exc):
            answered = check_now(self)
            if answered is not None:
                return not answered  # a failure is recorded by the probe itself
        self.record_failure(exc)
        return True

    def record_probe(self, result: ProbeResult, *, shared: bool = True) -> None:
        """A probe the replica answered (whatever it said: lag and promotion are verdicts,
        not failures); ``shared`` as for :meth:`record_failure`."""
        result = self._bound_lag(result, own=shared)
        self.last = result
        if result.server is None and self.servers == 1:  # a verdict of an older version
            result = dataclasses.replace(result, server=server_key(self.alias))
        if result.server is not None:
            if result.in_recovery:
                self.promoted.discard(result.server)
            found = result.server_position()
            if found is None:
                self.positions.pop(result.server, None)  # promoted: not a standby now
            else:
                self._note(found)
        now = result.checked_at
        if self.breaker.record_success(now):
            ramp = self.breaker.ramp_seconds
            logger.warning(
                "replica %s: answers again; serving reads%s",
                self.alias,
                f", its share ramping up over {ramp:g}s" if ramp else "",
            )
        held = self.breaker.state(now) is CircuitState.OPEN  # answered during a hold-down
        back = self.suspect and not held
        self.suspect = held
        if back:
            self.changed_at = clock.wall()
            if shared:  # seen here, not taken from another process's verdict
                attempts.answered(self.alias)
            if shared and self.shared:
                sync.publish(self)
        reason = self.reason()
        self._ok_until = now + self.interval if reason is None and not held else 0.0
        if reason != self._reported:
            self._reported = reason
            if reason is None:
                logger.info("replica %s: eligible for reads", self.alias)
            elif reason.startswith("promoted"):
                logger.error("replica %s: %s; it gets no reads", self.alias, reason)
            else:
                logger.warning("replica %s: %s; it gets no reads", self.alias, reason)

    def _bound_lag(self, result: ProbeResult, own: bool) -> ProbeResult:
        """The probe's lag, capped by the time since this process last saw the replica
        caught up: whatever it lacks was written after that. The probe alone counts from
        the last replayed commit, so after an idle spell a replica paused for a few seconds
        would look minutes behind and lose its reads for nothing."""
        lag = result.lag_seconds
        if lag is None or not result.in_recovery:
            return result
        if lag == 0.0:
            if own:  # another process's verdict arrives late: its time is not a bound
                self._caught_up_at = result.checked_at
            return result
        caught_up = self._caught_up_at
        if caught_up is not None and result.checked_at - caught_up < lag:
            return dataclasses.replace(result, lag_seconds=max(0.0, result.checked_at - caught_up))
        return result

    # -- I/O -----------------------------------------------------------------------------
    def probe(self, *, own_connection: bool = False) -> bool:
        """Query the replica and record the result; False when no probe could run here.

        Inline probes use the calling thread's connection; the background prober opens a
        short-lived one of its own (``own_connection``).
        """
        if not self._probe_lock.acquire(blocking=False):
            return False  # another thread is probing; use the last result
        try:
            try:
                run = run_probe_on_own_connection if own_connection else run_probe
                result = run(self.alias, clock.monotonic())
                if self.servers > 1 and not result.in_recovery and result.server:
                    # This connection reached a member that was promoted since: the alias
                    # still has standbys (libpq's target_session_attrs picks one), and
                    # every thread's kept connection there is to be left.
                    logger.info(
                        "replica %s: connection on %s, which is not a standby now; reconnecting",
                        self.alias,
                        result.server,
                    )
                    self.positions.pop(result.server, None)
                    self.promoted.add(result.server)
                    if not own_connection:  # a connection of its own is new each time
                        leave_promoted(self)
                    result = run(self.alias, clock.monotonic())
            except SynchronousOnlyOperation:
                return False  # on the event loop (aiterator()): no I/O here, says nothing
            except Exception as exc:  # any failure to reach the replica counts
                error = exc
            else:
                self.record_probe(result)
                return True
        finally:
            self._probe_lock.release()
        return self._record_error(error)  # unlocked: a pool's refusal takes another probe

    def _read_position(self) -> ServerPosition | None:
        try:
            found = read_position(self.alias)
        except SynchronousOnlyOperation:
            return None
        except Exception as exc:
            self._record_error(exc)
            return None
        self._note(found)
        return found

    def _note(self, found: ServerPosition) -> None:
        if found.server is not None:
            self.positions[found.server] = found


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
                    settings = get_settings()
                    item = ReplicaHealth(alias, settings)
                    self._items[alias] = item
                    if settings.cache is not None:
                        sync.ensure_running()
                return item

    def snapshot(self) -> dict[str, ReplicaHealth]:
        return dict(self._items)

    def reset(self) -> None:
        with self._lock:
            for item in self._items.values():
                item.retired = True
            self._items.clear()


registry = HealthRegistry()


def get_health(alias: str) -> ReplicaHealth:
    return registry.get(alias)


def replayed_everywhere(aliases: tuple[str, ...], need: Position) -> bool:
    """Has every server of every replica replayed up to ``need``, as far as this process
    knows (no query)?"""
    return all(registry.get(alias).replayed_everywhere(need) for alias in aliases)


def replica_weight(alias: str) -> float:
    """The share of its reads ``alias`` takes in this process now (1 if never used)."""
    item = registry.snapshot().get(alias)
    return 1.0 if item is None else item.weight(clock.monotonic())


def circuit_state(alias: str) -> CircuitState:
    """The circuit state of ``alias`` in this process (CLOSED if never used)."""
    item = registry.snapshot().get(alias)
    return CircuitState.CLOSED if item is None else item.breaker.state(clock.monotonic())


def _reset_on_change(**kwargs: Any) -> None:
    if kwargs.get("setting") in ("PGREPLICA", "DATABASES"):
        registry.reset()


setting_changed.connect(_reset_on_change, dispatch_uid="django_pgreplica.health.reset")
