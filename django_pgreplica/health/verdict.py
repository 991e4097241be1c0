"""Whether a replica may serve reads, from what a probe saw. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeResult:
    """One look at a replica (``checked_at`` on the monotonic clock)."""

    ok: bool
    checked_at: float
    in_recovery: bool | None = None
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    lag_seconds: float | None = None
    error: str | None = None


def ineligibility_reason(
    *,
    reachable: bool,
    in_recovery: bool | None,
    lag_seconds: float | None,
    max_lag_seconds: float | None,
    error: str | None = None,
) -> str | None:
    """Why a replica in this state may not serve reads, or None if it may.

    The router asks it of each probe; monitoring asks it of what it observed, so the
    ``healthy`` column says exactly what the router would decide.
    """
    if not reachable:
        return f"unreachable: {error or 'no answer'}"
    if not in_recovery:
        return "promoted: not in recovery"
    if max_lag_seconds is not None and (lag_seconds or 0.0) > max_lag_seconds:
        return f"lagging {lag_seconds:.1f}s > {max_lag_seconds:g}s"
    return None


def probe_reason(probe: ProbeResult | None, max_lag_seconds: float | None) -> str | None:
    """:func:`ineligibility_reason` of a probe; None before the first probe (the connection
    attempt itself is the first check)."""
    if probe is None:
        return None
    return ineligibility_reason(
        reachable=probe.ok,
        in_recovery=probe.in_recovery,
        lag_seconds=probe.lag_seconds,
        max_lag_seconds=max_lag_seconds,
        error=probe.error,
    )
