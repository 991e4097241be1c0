"""Whether a replica may serve reads, from what a probe saw. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass

from ..lsn import Position


@dataclass(frozen=True)
class ProbeResult:
    """One look at a replica (``checked_at`` on the monotonic clock). ``server``: which
    server of the alias answered (``host:port``); ``timeline``: the one it replays;
    ``started_at``: when its postmaster started (epoch seconds)."""

    ok: bool
    checked_at: float
    in_recovery: bool | None = None
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    lag_seconds: float | None = None
    error: str | None = None
    server: str | None = None
    timeline: int | None = None
    started_at: float | None = None

    def server_position(self) -> ServerPosition | None:
        """Where the answering standby's replay stood (None: failed, promoted, unknown)."""
        if not self.ok or not self.in_recovery or self.replay_lsn is None or self.server is None:
            return None
        return ServerPosition(
            self.server, Position(self.replay_lsn, self.timeline), self.started_at
        )


@dataclass(frozen=True)
class ServerPosition:
    """How far one server of a replica alias has replayed (``position`` None: nothing yet)."""

    server: str | None
    position: Position | None
    started_at: float | None = None

    def covers(self, need: Position) -> bool:
        return self.position is not None and self.position.covers(need)


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
