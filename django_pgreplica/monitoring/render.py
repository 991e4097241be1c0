"""A report as text tables or as a JSON-able dict. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ..lsn import format_lsn
from ..routing.stats import READ_REASONS, REASON_TOKEN_WAIT, RoutingCounts
from ..units import format_bytes, format_seconds
from .types import AuditFinding, ReplicaReport, Report, RoutingView, SlotReport, StandbyRow


def _lsn(value: int | None) -> str | None:
    return None if value is None else format_lsn(value)


def replica_to_dict(item: ReplicaReport) -> dict[str, Any]:
    return {
        "alias": item.alias,
        "status": item.status.name,
        "reasons": list(item.reasons),
        "reachable": item.reachable,
        "healthy": item.healthy,
        "in_recovery": item.in_recovery,
        "state": item.state,
        "sync_state": item.sync_state,
        "application_name": item.application_name,
        "client_addr": item.client_addr,
        "matched_by": item.matched_by,
        "write_lag_seconds": item.write_lag_seconds,
        "flush_lag_seconds": item.flush_lag_seconds,
        "replay_lag_seconds": item.replay_lag_seconds,
        "lag_seconds": item.lag_seconds,
        "lag_bytes": item.lag_bytes,
        "receive_lsn": _lsn(item.receive_lsn),
        "replay_lsn": _lsn(item.replay_lsn),
        "replay_paused": item.replay_paused,
        "receiver_status": item.receiver_status,
        "slot_name": item.slot_name,
        "slot_retained_bytes": item.slot_retained_bytes,
        "circuit_state": item.circuit_state.label,
        "error": item.error,
    }


def slot_to_dict(item: SlotReport) -> dict[str, Any]:
    data = asdict(item)
    data["status"] = item.status.name
    data["reasons"] = list(item.reasons)
    return data


def standby_to_dict(row: StandbyRow) -> dict[str, Any]:
    data = asdict(row)
    for key in ("sent_lsn", "write_lsn", "flush_lsn", "replay_lsn"):
        data[key] = _lsn(data[key])
    return data


def report_to_dict(report: Report) -> dict[str, Any]:
    """One JSON document: ``json.dumps(report_to_dict(r))`` always works."""
    primary = report.primary
    return {
        "status": report.status.name,
        "exit_code": int(report.status),
        "checked_at": report.checked_at.isoformat(),
        "primary": {
            "alias": primary.alias,
            "reachable": primary.reachable,
            "error": primary.error,
            "in_recovery": primary.in_recovery,
            "current_lsn": _lsn(primary.current_lsn),
            "server": primary.server,
        },
        "thresholds": asdict(report.thresholds),
        "replicas": [replica_to_dict(item) for item in report.replicas],
        "slots": [slot_to_dict(item) for item in report.slots],
        "unmatched_standbys": [standby_to_dict(row) for row in report.unmatched_standbys],
        "audit": [asdict(finding) for finding in report.audit],
        "messages": list(report.messages),
        "routing": None if report.routing is None else routing_to_dict(report.routing),
    }


def routing_to_dict(view: RoutingView) -> dict[str, Any]:
    counts = view.counts
    out: dict[str, Any] = {"source": view.source, "note": view.note or None}
    if counts is None:
        return out
    waits = counts.all_waits()
    out.update(
        processes=counts.processes,
        reads_by_reason=counts.by_reason(),
        reads_by_database=counts.by_database(),
        token_wait_reads=counts.by_reason().get(REASON_TOKEN_WAIT, 0),
        fallbacks=dict(counts.fallbacks),
        replay_waits={
            "count": waits.count,
            "seconds_total": waits.total,
            "p50_seconds_at_most": waits.quantile(0.5),
            "p99_seconds_at_most": waits.quantile(0.99),
            "by_outcome": {outcome: h.count for outcome, h in sorted(counts.waits.items())},
            "buckets": [[bound, n] for bound, n in waits.cumulative()],
        },
    )
    return out


# --- text ----------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]


def replica_state(item: ReplicaReport, paused: str = "paused") -> str:
    """One word or two for a replica's state: down, promoted, streaming, paused..."""
    if not item.reachable:
        return "down" if item.state is None else f"down ({item.state})"
    if item.in_recovery is False:
        return "promoted"
    state = item.state or "-"
    return f"{state}, {paused}" if item.replay_paused else state


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def replica_lines(replicas: Sequence[ReplicaReport]) -> list[str]:
    headers = (
        "REPLICA",
        "STATUS",
        "STATE",
        "SYNC",
        "WRITE LAG",
        "FLUSH LAG",
        "REPLAY LAG",
        "LAG",
        "LAG BYTES",
        "SLOT RETAINED",
        "CIRCUIT",
        "HEALTHY",
    )
    rows = [
        [
            item.alias,
            item.status.name,
            replica_state(item),
            item.sync_state or "-",
            format_seconds(item.write_lag_seconds),
            format_seconds(item.flush_lag_seconds),
            format_seconds(item.replay_lag_seconds),
            format_seconds(item.lag_seconds),
            format_bytes(item.lag_bytes),
            format_bytes(item.slot_retained_bytes),
            item.circuit_state.label,
            _yes(item.healthy),
        ]
        for item in replicas
    ]
    lines = _table(headers, rows)
    for item in replicas:
        lines += [f"  {item.alias}: {reason}" for reason in item.reasons]
    return lines


def slot_lines(slots: Sequence[SlotReport]) -> list[str]:
    headers = (
        "SLOT",
        "TYPE",
        "ACTIVE",
        "WAL STATUS",
        "RETAINED",
        "SAFE WAL SIZE",
        "REPLICA",
        "STATUS",
    )
    rows = [
        [
            item.slot_name,
            item.slot_type,
            _yes(item.active),
            item.wal_status or "-",
            format_bytes(item.retained_bytes),
            format_bytes(item.safe_wal_size),
            item.replica or "-",
            item.status.name,
        ]
        for item in slots
    ]
    lines = _table(headers, rows)
    for item in slots:
        lines += [f"  {item.slot_name}: {reason}" for reason in item.reasons]
    return lines


def audit_lines(findings: Sequence[AuditFinding]) -> list[str]:
    lines = []
    for item in findings:
        detail = ""
        if item.setting and item.actual is not None:
            detail = f" [{item.setting}: {item.actual}, recommended {item.recommended}]"
        lines.append(f"  {item.code} {item.node}: {item.message}{detail}")
    return lines


def render_text(report: Report) -> str:
    primary = report.primary
    where = f"at {_lsn(primary.current_lsn)}" if primary.current_lsn is not None else ""
    if where and primary.server:
        where += f" on {primary.server}"
    t = report.thresholds
    lines = [
        f"Replication status: {report.status.name}",
        f"Primary: {primary.alias} "
        + (where or ("unreachable" if not primary.reachable else "in recovery")),
        f"Checked: {report.checked_at.isoformat(timespec='seconds')}   "
        f"thresholds: warning > {t.warning_seconds:g}s, critical > {t.critical_seconds:g}s "
        f"or > {format_bytes(t.critical_bytes)}",
    ]
    lines += [f"! {message}" for message in report.messages]
    lines += ["", *replica_lines(report.replicas)] if report.replicas else ["", "No replicas."]
    if report.slots:
        lines += ["", "Replication slots:", *slot_lines(report.slots)]
    if report.unmatched_standbys:
        lines += ["", "Standbys connected to the primary but matched to no replica alias:"]
        lines += [
            f"  {row.application_name or '-'} from {row.client_addr or 'local'}: "
            f"{row.state or '?'}, {format_bytes(row.lag_bytes)} behind"
            for row in report.unmatched_standbys
        ]
        lines.append('  (map them with PGREPLICA["REPLICA_APPLICATION_NAMES"])')
    if report.routing is not None:
        lines += ["", *routing_lines(report.routing)]
    if report.audit:
        count = len(report.audit)
        lines += ["", f"Configuration audit ({count} warning{'' if count == 1 else 's'}):"]
        lines += audit_lines(report.audit)
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "> 1 s" if seconds == float("inf") else f"<= {seconds * 1000:g} ms"


def routing_lines(view: RoutingView) -> list[str]:
    """Where reads went, by reason, and the replay waits (REPLAY_WAIT_SECONDS)."""
    counts = view.counts
    if counts is None:
        return [f"Routing: unavailable ({view.note})"]
    reasons = counts.by_reason()
    lines = [f"Routing ({routing_source(view)}):"]
    if not reasons:
        return [*lines, "  no reads routed yet"]
    order = [r for r in READ_REASONS if r in reasons] + sorted(set(reasons) - set(READ_REASONS))
    lines.append("  reads: " + ", ".join(f"{reason} {reasons[reason]}" for reason in order))
    lines.append(
        "  by database: " + ", ".join(f"{db} {n}" for db, n in sorted(counts.by_database().items()))
    )
    lines.append(
        f"  token-wait: {reasons.get(REASON_TOKEN_WAIT, 0)} reads went to the primary "
        "because no replica had replayed the client's token"
    )
    lines.append(f"  replay waits: {wait_summary(counts)}")
    if counts.fallbacks:
        lines.append(
            "  fallbacks: "
            + ", ".join(f"{replica} {n}" for replica, n in sorted(counts.fallbacks.items()))
        )
    return lines


def routing_source(view: RoutingView) -> str:
    if view.source == "process":
        return "this process only (set PGREPLICA['CACHE'] to count every process)"
    n = view.counts.processes if view.counts is not None else 0
    return f"{n} process{'' if n == 1 else 'es'} sharing CACHE, since each started"


def wait_summary(counts: RoutingCounts) -> str:
    """'31 (28 replayed, 3 timeout), mean 2.4 ms, p50 <= 2.5 ms, p99 <= 10 ms'."""
    waits = counts.all_waits()
    if not waits.count:
        return "none"
    outcomes = ", ".join(
        f"{h.count} {outcome}" for outcome, h in sorted(counts.waits.items()) if h.count
    )
    mean_ms = waits.total / waits.count * 1000
    return (
        f"{waits.count} ({outcomes}), mean {mean_ms:.1f} ms, "
        f"p50 {_ms(waits.quantile(0.5))}, p99 {_ms(waits.quantile(0.99))}"
    )
