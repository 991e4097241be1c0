"""Circuit breaker with flap damping and a ramp: a pure state machine, time passed in.

- CLOSED: the replica serves reads at full weight. FAILURE_THRESHOLD consecutive failures
  open the circuit.
- OPEN: no reads. Nothing waits for a timeout: the first success recorded (a background
  probe) after the hold-down ends the outage. The hold-down is 0 for a replica that was
  steady; one that fails again within RESET_TIMEOUT of recovering (a flap) is held out
  for 2, 4, 8 ... HEALTH_CHECK_INTERVALs, at most RESET_TIMEOUT.
- HALF_OPEN: recovered and ramping: its weight (the share of the reads that would go to
  it) grows linearly from RAMP_START to 1 over RAMP_SECONDS, then the circuit is CLOSED.
  A failure while ramping re-opens it, as a flap. (Linear, not a slower start: in
  benchmarks/ramp.py a quadratic curve cost more shifted reads and no less latency.)
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

RAMP_START = 0.1  # a recovered replica's first share; 0 would wait a whole probe for nothing


class CircuitState(enum.IntEnum):
    """Values match the ``django_pgreplica_circuit_state`` gauge."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass
class _Counters:
    opened: bool = False
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    recovered_at: float | None = None  # when the last outage ended
    flaps: int = 0  # outages that began within RESET_TIMEOUT of the previous recovery


class CircuitBreaker:
    """Thread-safe; every method takes ``now`` (monotonic seconds) so tests own the clock."""

    def __init__(
        self,
        failure_threshold: int,
        reset_timeout: float,
        *,
        hold_step: float = 1.0,
        ramp_seconds: float = 0.0,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.hold_step = hold_step
        self.ramp_seconds = ramp_seconds
        self._c = _Counters()
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------
    def state(self, now: float) -> CircuitState:
        c = self._c
        if c.opened:
            return CircuitState.OPEN
        if c.recovered_at is not None and now - c.recovered_at < self.ramp_seconds:
            return CircuitState.HALF_OPEN
        return CircuitState.CLOSED

    def ramp_progress(self, now: float) -> float:
        """How far the ramp is, 0 (just recovered) to 1 (full share); 0 while open."""
        c = self._c
        if c.opened:
            return 0.0
        if c.recovered_at is None or self.ramp_seconds <= 0:
            return 1.0
        return min(1.0, max(0.0, (now - c.recovered_at) / self.ramp_seconds))

    def weight(self, now: float) -> float:
        """The share of the reads meant for this replica that it should take now."""
        if self._c.opened:
            return 0.0
        progress = self.ramp_progress(now)
        return 1.0 if progress >= 1.0 else RAMP_START + (1.0 - RAMP_START) * progress

    @property
    def failures(self) -> int:
        return self._c.failures

    @property
    def flaps(self) -> int:
        return self._c.flaps

    def hold_down(self) -> float:
        """How long an outage lasts at least: 0 for a steady replica, then doubling."""
        flaps = self._c.flaps
        if flaps == 0:
            return 0.0
        return min(self.reset_timeout, self.hold_step * 2.0**flaps)

    def held_until(self) -> float:
        """While OPEN, the earliest time a success may end the outage."""
        return self._c.opened_at + self.hold_down()

    # -- outcomes ------------------------------------------------------------------------
    def record_failure(self, now: float) -> bool:
        """Returns True when this failure opened the circuit."""
        with self._lock:
            c = self._c
            c.failures += 1
            if c.opened:
                return False
            ramping = self.state(now) is CircuitState.HALF_OPEN
            if not ramping and c.failures < self.failure_threshold:
                return False
            self._open(now)
            return True

    def trip(self, now: float) -> bool:
        """Open the circuit on another process's word (shared health: its circuit opened),
        as if FAILURE_THRESHOLD failures had been seen here. True when this opened it."""
        with self._lock:
            c = self._c
            if c.opened:
                return False
            c.failures = max(c.failures, self.failure_threshold)
            self._open(now)
            return True

    def _open(self, now: float) -> None:
        c = self._c
        recent = c.recovered_at is not None and now - c.recovered_at < self.reset_timeout
        c.flaps = c.flaps + 1 if recent else 0
        c.opened, c.opened_at = True, now

    def record_success(self, now: float) -> bool:
        """Returns True when this success ended an outage (the replica may ramp up now).
        A success before the hold-down is over changes nothing."""
        with self._lock:
            c = self._c
            if not c.opened:
                c.failures = 0
                if c.recovered_at is not None and now - c.recovered_at >= self.reset_timeout:
                    c.flaps = 0  # steady for RESET_TIMEOUT: the next outage is a fresh one
                return False
            if now < c.opened_at + self.hold_down():
                return False
            c.opened, c.failures, c.recovered_at = False, 0, now
            return True
