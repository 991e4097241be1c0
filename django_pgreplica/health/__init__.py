"""Replica health: may this replica serve reads now?

- :mod:`.breaker` — the circuit breaker, a pure state machine (time passed in);
- :mod:`.verdict` — eligibility from what a probe saw (pure);
- :mod:`.probe` — the probe query (I/O);
- :mod:`.replica` — :class:`ReplicaHealth` per replica per process, tying them together.
"""

from __future__ import annotations

from .breaker import CircuitBreaker, CircuitState
from .replica import ReplicaHealth, circuit_state, get_health, registry
from .verdict import ProbeResult, ineligibility_reason

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "ProbeResult",
    "ReplicaHealth",
    "circuit_state",
    "get_health",
    "ineligibility_reason",
    "registry",
]
