"""Replica health: may this replica serve reads now?

- :mod:`.breaker` — the circuit breaker, a pure state machine (time passed in);
- :mod:`.verdict` — eligibility from what a probe saw (pure);
- :mod:`.probe` — the probe query (I/O);
- :mod:`.replica` — :class:`ReplicaHealth` per replica per process, tying them together;
- :mod:`.primary` — whether the primary just failed to answer (for last-resort reads).
"""

from __future__ import annotations

from .breaker import CircuitBreaker, CircuitState
from .primary import PrimaryHealth, primary_health
from .replica import (
    ReplicaHealth,
    circuit_state,
    get_health,
    registry,
    replayed_everywhere,
    replica_weight,
)
from .verdict import ProbeResult, ineligibility_reason

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "PrimaryHealth",
    "ProbeResult",
    "ReplicaHealth",
    "circuit_state",
    "get_health",
    "ineligibility_reason",
    "primary_health",
    "registry",
    "replayed_everywhere",
    "replica_weight",
]
