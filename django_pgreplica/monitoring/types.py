"""Dataclasses of replication monitoring: what the servers said, and what it means.

Observations (``*Row``, ``*Observation``) are filled by :mod:`.queries` and hold raw facts;
reports (``*Report``, :class:`AuditFinding`) are built from them by the pure functions in
:mod:`.evaluate` and :mod:`.audit`. WAL positions are integers (see :mod:`django_pgreplica.lsn`);
durations are float seconds; sizes are bytes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..conf import Settings
from ..health.breaker import CircuitState
from ..routing.stats import RoutingCounts


class Status(enum.IntEnum):
    """Nagios levels; the value is the exit code of ``manage.py replication_status``."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class Thresholds:
    """Lag above ``warning_seconds`` warns; above ``critical_*`` is critical (strictly >)."""

    warning_seconds: float
    critical_seconds: float
    critical_bytes: int

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        warning_seconds: float | None = None,
        critical_seconds: float | None = None,
        critical_bytes: int | None = None,
    ) -> Thresholds:
        return cls(
            settings.lag_warning_seconds if warning_seconds is None else warning_seconds,
            settings.lag_critical_seconds if critical_seconds is None else critical_seconds,
            settings.lag_critical_bytes if critical_bytes is None else critical_bytes,
        )


# --- observations ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSetting:
    """One ``pg_settings`` row: ``setting`` as PostgreSQL spells it, in ``unit``."""

    name: str
    setting: str
    unit: str | None = None


ServerSettings = Mapping[str, ServerSetting]


@dataclass(frozen=True)
class StandbyRow:
    """One row of the primary's ``pg_stat_replication`` (one connected WAL receiver).

    Without ``pg_monitor`` (or ``pg_read_all_stats``) PostgreSQL shows only ``pid`` and
    ``application_name``: every other field is then None.
    """

    pid: int
    application_name: str
    client_addr: str | None = None
    client_port: int | None = None
    state: str | None = None
    sync_state: str | None = None
    sent_lsn: int | None = None
    write_lsn: int | None = None
    flush_lsn: int | None = None
    replay_lsn: int | None = None
    write_lag: float | None = None
    flush_lag: float | None = None
    replay_lag: float | None = None
    lag_bytes: int | None = None  # pg_current_wal_lsn() - replay_lsn, right while paused
    reply_age: float | None = None  # seconds since the standby's last reply (replay_lag's age)


@dataclass(frozen=True)
class SlotRow:
    """One row of the primary's ``pg_replication_slots``."""

    slot_name: str
    slot_type: str
    active: bool
    active_pid: int | None = None
    restart_lsn: int | None = None
    wal_status: str | None = None  # reserved | extended | unreserved | lost
    retained_bytes: int | None = None  # pg_current_wal_lsn() - restart_lsn
    safe_wal_size: int | None = None  # bytes left before the slot is invalidated


@dataclass(frozen=True)
class PrimaryObservation:
    alias: str
    reachable: bool
    error: str | None = None
    in_recovery: bool | None = None  # True: the PRIMARY alias points at a standby
    current_lsn: int | None = None
    system_identifier: int | None = None
    server: str | None = None  # host:port it answered on (which member, behind a multi-host HOST)
    standbys: tuple[StandbyRow, ...] = ()
    slots: tuple[SlotRow, ...] = ()
    settings: ServerSettings = field(default_factory=dict)


@dataclass(frozen=True)
class WalReceiver:
    """The replica's ``pg_stat_wal_receiver`` row (absent when no receiver runs).

    ``visible`` is False when the role may not see the details (no ``pg_monitor``).
    ``application_name`` is the name the receiver announces to the primary: from its
    conninfo, else ``cluster_name`` (PostgreSQL's fallback), else ``"walreceiver"``.
    """

    visible: bool
    status: str | None = None
    slot_name: str | None = None
    sender_host: str | None = None
    sender_port: int | None = None
    application_name: str | None = None
    flushed_lsn: int | None = None


@dataclass(frozen=True)
class ReplicaObservation:
    alias: str
    reachable: bool
    error: str | None = None
    in_recovery: bool | None = None
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    # Replay delay as the router's probe computes it: 0 when everything received has been
    # replayed (an idle primary is not lag), else now() - last replayed commit.
    lag_seconds: float | None = None
    # With WAL received but not replayed: how long ago the newest of it arrived (a lower
    # bound of the lag; pg_stat_wal_receiver.latest_end_time)
    unreplayed_age: float | None = None
    replay_paused: bool | None = None
    receiver: WalReceiver | None = None
    server_addr: str | None = None  # inet_server_addr(): matched to client_addr
    cluster_name: str | None = None
    primary_slot_name: str | None = None
    system_identifier: int | None = None
    settings: ServerSettings = field(default_factory=dict)


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaReport:
    """One configured replica alias, evaluated.

    ``lag_seconds`` (:func:`~.evaluate.replica_lag`: the replica's figure, bounded by the
    primary's extrapolated ``replay_lag``; 0 when caught up) and ``lag_bytes`` (primary's current
    WAL position minus the replica's replay position) are what the thresholds judge;
    ``write/flush/replay_lag_seconds`` are PostgreSQL's own ``pg_stat_replication`` figures,
    shown as they are (as of the standby's last reply; NULL when idle).
    ``healthy`` means the router would send it reads: reachable, in recovery, within
    MAX_LAG_SECONDS, circuit closed in this process.
    """

    alias: str
    status: Status
    reasons: tuple[str, ...]
    reachable: bool
    healthy: bool
    circuit_state: CircuitState
    in_recovery: bool | None = None
    state: str | None = None
    sync_state: str | None = None
    application_name: str | None = None
    client_addr: str | None = None
    matched_by: str | None = None  # how the pg_stat_replication row was found
    write_lag_seconds: float | None = None
    flush_lag_seconds: float | None = None
    replay_lag_seconds: float | None = None
    lag_seconds: float | None = None
    lag_bytes: int | None = None
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    replay_paused: bool | None = None
    receiver_status: str | None = None
    slot_name: str | None = None
    slot_retained_bytes: int | None = None
    error: str | None = None

    @property
    def streaming(self) -> bool:
        return self.state == "streaming"


@dataclass(frozen=True)
class SlotReport:
    slot_name: str
    slot_type: str
    active: bool
    status: Status
    reasons: tuple[str, ...]
    wal_status: str | None = None
    retained_bytes: int | None = None
    safe_wal_size: int | None = None
    replica: str | None = None  # the replica alias using it, when known


@dataclass(frozen=True)
class AuditFinding:
    """A setting that departs from docs/postgresql.md's recommendations. Never changes the
    status."""

    code: str
    node: str  # a Django alias
    message: str
    setting: str | None = None
    actual: str | None = None
    recommended: str | None = None


@dataclass(frozen=True)
class RoutingView:
    """Where reads went and how long they waited for replay (:mod:`..routing.stats`), and
    whose counts these are: ``"fleet"`` (every process publishing to CACHE) or
    ``"process"`` (only the one asking; without CACHE). ``counts`` is None when the cache
    could not be read (``note`` says why)."""

    source: str
    counts: RoutingCounts | None
    note: str = ""


@dataclass(frozen=True)
class Report:
    """Everything ``replication_status`` shows; ``status`` is the worst of its parts,
    UNKNOWN when the primary could not be asked."""

    checked_at: datetime
    status: Status
    primary: PrimaryObservation
    thresholds: Thresholds
    replicas: tuple[ReplicaReport, ...]
    slots: tuple[SlotReport, ...] = ()
    audit: tuple[AuditFinding, ...] = ()
    unmatched_standbys: tuple[StandbyRow, ...] = ()  # pg_stat_replication rows of no alias
    messages: tuple[str, ...] = ()  # report-wide problems (primary down, ...)
    routing: RoutingView | None = None

    def replica(self, alias: str) -> ReplicaReport:
        for item in self.replicas:
            if item.alias == alias:
                return item
        raise KeyError(alias)
