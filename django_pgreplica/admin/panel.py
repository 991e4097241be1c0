"""The replication page's view models: a monitoring :class:`Report` turned into display rows.

Pure: a report in, dataclasses and strings out, so the template has no logic left beyond
loops and ``if``. Sizes and durations are formatted by :mod:`django_pgreplica.units`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..health.breaker import CircuitState
from ..lsn import format_lsn
from ..monitoring import (
    AuditFinding,
    ReplicaReport,
    Report,
    RoutingView,
    SlotReport,
    StandbyRow,
    Status,
)
from ..monitoring.render import replica_state, routing_source, wait_summary
from ..routing.stats import READ_REASONS, REASON_TOKEN_WAIT
from ..units import format_bytes, format_compact, format_seconds

_BADGE_CSS = {
    Status.OK: "ok",
    Status.WARNING: "warning",
    Status.CRITICAL: "critical",
    Status.UNKNOWN: "unknown",
}
_REPLICA_LABELS = {
    Status.OK: "healthy",
    Status.WARNING: "warning",
    Status.CRITICAL: "critical",
    Status.UNKNOWN: "unknown",
}
_CIRCUIT_CSS = {
    CircuitState.CLOSED: "ok",
    CircuitState.HALF_OPEN: "warning",
    CircuitState.OPEN: "critical",
}


@dataclass(frozen=True)
class Badge:
    label: str
    css: str  # ok | warning | critical | unknown


def status_badge(status: Status, *, replica: bool = False) -> Badge:
    label = _REPLICA_LABELS[status] if replica else status.name
    return Badge(label, _BADGE_CSS[status])


@dataclass(frozen=True)
class ReplicaRow:
    """One replica as the page shows it: display strings, no logic left for the template."""

    alias: str
    badge: Badge
    state: str
    down: bool
    sync_state: str
    write_lag: str
    flush_lag: str
    replay_lag: str
    lag: str
    lag_bytes: str
    slot: str
    slot_retained: str
    circuit: Badge
    serves_reads: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class SlotRowView:
    name: str
    slot_type: str
    active: bool
    wal_status: str
    retained: str
    safe_wal_size: str
    replica: str
    badge: Badge
    reasons: tuple[str, ...]


def replica_row(item: ReplicaReport) -> ReplicaRow:
    return ReplicaRow(
        alias=item.alias,
        badge=status_badge(item.status, replica=True),
        state=replica_state(item, paused="replay paused"),  # "down" is the template's
        down=not item.reachable,
        sync_state=item.sync_state or "-",
        write_lag=format_seconds(item.write_lag_seconds),
        flush_lag=format_seconds(item.flush_lag_seconds),
        replay_lag=format_seconds(item.replay_lag_seconds),
        lag=format_seconds(item.lag_seconds),
        lag_bytes=format_bytes(item.lag_bytes),
        slot=item.slot_name or "-",
        slot_retained=format_bytes(item.slot_retained_bytes),
        circuit=Badge(item.circuit_state.label, _CIRCUIT_CSS[item.circuit_state]),
        serves_reads=item.healthy,
        reasons=item.reasons,
    )


def slot_row(item: SlotReport) -> SlotRowView:
    return SlotRowView(
        name=item.slot_name,
        slot_type=item.slot_type,
        active=item.active,
        wal_status=item.wal_status or "-",
        retained=format_bytes(item.retained_bytes),
        safe_wal_size=format_bytes(item.safe_wal_size),
        replica=item.replica or "-",
        badge=status_badge(item.status),
        reasons=item.reasons,
    )


def standby_line(row: StandbyRow) -> str:
    return (
        f"{row.application_name or '-'} from {row.client_addr or 'local'}: "
        f"{row.state or '?'}, {format_bytes(row.lag_bytes)} behind"
    )


def audit_detail(item: AuditFinding) -> str:
    if item.setting and item.actual is not None:
        return f"{item.setting} = {item.actual}, recommended {item.recommended}"
    return ""


def routing_context(view: RoutingView | None) -> dict[str, Any] | None:
    """Reads by reason and database, and the replay waits, for the routing module."""
    if view is None:
        return None
    counts = view.counts
    if counts is None:
        return {"error": view.note}
    reasons = counts.by_reason()
    total = sum(reasons.values())
    order = [r for r in READ_REASONS if r in reasons] + sorted(set(reasons) - set(READ_REASONS))
    return {
        "source": routing_source(view),
        "total": total,
        "reasons": [(r, reasons[r], f"{reasons[r] / total:.1%}") for r in order],
        "databases": sorted(counts.by_database().items()),
        "token_wait": reasons.get(REASON_TOKEN_WAIT, 0),
        "waits": wait_summary(counts),
        "fallbacks": sorted(counts.fallbacks.items()),
    }


def report_context(report: Report) -> dict[str, Any]:
    """The template variables that come from the report alone."""
    primary = report.primary
    return {
        "report": report,
        "overall": status_badge(report.status),
        "primary": primary,
        "primary_lsn": None if primary.current_lsn is None else format_lsn(primary.current_lsn),
        "replicas": [replica_row(item) for item in report.replicas],
        "slots": [slot_row(item) for item in report.slots],
        "unmatched": [standby_line(row) for row in report.unmatched_standbys],
        "audit": [(item, audit_detail(item)) for item in report.audit],
        "routing": routing_context(report.routing),
        "thresholds": {
            "warning": format_compact(report.thresholds.warning_seconds, "seconds"),
            "critical": format_compact(report.thresholds.critical_seconds, "seconds"),
            "critical_bytes": format_bytes(report.thresholds.critical_bytes),
        },
    }
