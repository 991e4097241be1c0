"""Circuit breaker: a pure state machine with an injected clock.

CLOSED lets reads through and counts consecutive failures; FAILURE_THRESHOLD of them open
the circuit. OPEN refuses reads until RESET_TIMEOUT has passed, then lets exactly one caller
through as the HALF_OPEN trial: its success closes the circuit, its failure re-opens it for
another RESET_TIMEOUT. A trial that never reports back (its caller died) is given up after
another RESET_TIMEOUT so the replica is not stuck half-open forever.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass


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
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_started_at: float | None = None


class CircuitBreaker:
    """Thread-safe; every method takes ``now`` (monotonic seconds) so tests own the clock."""

    def __init__(self, failure_threshold: int, reset_timeout: float) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._c = _Counters()
        self._lock = threading.Lock()

    def state(self, now: float) -> CircuitState:
        """The state as callers see it: an open circuit past its timeout reads half-open."""
        c = self._c
        if c.state is CircuitState.OPEN and now - c.opened_at >= self.reset_timeout:
            return CircuitState.HALF_OPEN
        return c.state

    @property
    def failures(self) -> int:
        return self._c.failures

    def allow(self, now: float) -> bool:
        """May a caller use the replica now? Claims the single half-open trial if due."""
        c = self._c
        if c.state is CircuitState.CLOSED:
            return True
        with self._lock:
            if c.state is CircuitState.OPEN:
                if now - c.opened_at < self.reset_timeout:
                    return False
                c.state = CircuitState.HALF_OPEN
                c.trial_started_at = now
                return True
            if c.state is CircuitState.HALF_OPEN:
                started = c.trial_started_at
                if started is None or now - started >= self.reset_timeout:
                    c.trial_started_at = now
                    return True
                return False
            return True

    def release_trial(self) -> None:
        """Give back a half-open trial that was claimed but never ran."""
        with self._lock:
            if self._c.state is CircuitState.HALF_OPEN:
                self._c.trial_started_at = None

    def record_success(self, now: float) -> bool:
        """Returns True when this success closed a circuit that was not closed."""
        c = self._c
        if c.state is CircuitState.CLOSED and c.failures == 0:
            return False
        with self._lock:
            reopened = c.state is not CircuitState.CLOSED
            c.state = CircuitState.CLOSED
            c.failures = 0
            c.trial_started_at = None
            return reopened

    def record_failure(self, now: float) -> bool:
        """Returns True when this failure opened the circuit."""
        c = self._c
        with self._lock:
            c.failures += 1
            if c.state is CircuitState.HALF_OPEN or (
                c.state is CircuitState.CLOSED and c.failures >= self.failure_threshold
            ):
                c.state = CircuitState.OPEN
                c.opened_at = now
                c.trial_started_at = None
                return True
            if c.state is CircuitState.OPEN:
                c.opened_at = now
            return False
