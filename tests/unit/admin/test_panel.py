"""The admin page's view models, built from hand-made monitoring reports. No database."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from django_pgreplica.admin.panel import (
    Badge,
    audit_detail,
    replica_row,
    report_context,
    slot_row,
    standby_line,
    status_badge,
)
from django_pgreplica.health.breaker import CircuitState
from django_pgreplica.monitoring import (
    AuditFinding,
    PrimaryObservation,
    ReplicaReport,
    Report,
    SlotReport,
    StandbyRow,
    Status,
    Thresholds,
)

MiB = 1024 * 1024
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
THRESHOLDS = Thresholds(warning_seconds=5, critical_seconds=30, critical_bytes=100 * MiB)


def replica(alias: str = "replica", **kw: Any) -> ReplicaReport:
    defaults: dict[str, Any] = {
        "status": Status.OK,
        "reasons": (),
        "reachable": True,
        "healthy": True,
        "circuit_state": CircuitState.CLOSED,
        "in_recovery": True,
        "state": "streaming",
        "sync_state": "async",
        "write_lag_seconds": 0.0012,
        "flush_lag_seconds": 0.0025,
        "replay_lag_seconds": 12.34,
        "lag_seconds": 0.0,
        "lag_bytes": 1536,
        "slot_name": "replica1",
        "slot_retained_bytes": 3 * MiB,
    }
    return ReplicaReport(alias, **{**defaults, **kw})


def report(**kw: Any) -> Report:
    defaults: dict[str, Any] = {
        "checked_at": NOW,
        "status": Status.OK,
        "primary": PrimaryObservation("default", reachable=True, current_lsn=0x1_0000_00A0),
        "thresholds": THRESHOLDS,
        "replicas": (replica(),),
    }
    return Report(**{**defaults, **kw})


def test_status_badges_name_the_level_and_replicas_read_healthy() -> None:
    assert status_badge(Status.OK) == Badge("OK", "ok")
    assert status_badge(Status.UNKNOWN) == Badge("UNKNOWN", "unknown")
    assert status_badge(Status.OK, replica=True) == Badge("healthy", "ok")
    assert status_badge(Status.CRITICAL, replica=True) == Badge("critical", "critical")


def test_a_streaming_replica_row_is_all_display_strings() -> None:
    row = replica_row(replica())
    assert row.alias == "replica"
    assert row.badge == Badge("healthy", "ok")
    assert (row.state, row.down, row.sync_state) == ("streaming", False, "async")
    assert (row.write_lag, row.flush_lag, row.replay_lag, row.lag) == (
        "0.001s",
        "0.003s",
        "12.3s",
        "0.000s",
    )
    assert (row.lag_bytes, row.slot, row.slot_retained) == ("1.5 KiB", "replica1", "3.0 MiB")
    assert row.circuit == Badge("closed", "ok")
    assert row.serves_reads and row.reasons == ()


def test_a_paused_replica_says_replay_paused_and_keeps_its_reasons() -> None:
    item = replica(
        status=Status.WARNING,
        replay_paused=True,
        circuit_state=CircuitState.HALF_OPEN,
        reasons=("WAL replay is paused",),
    )
    row = replica_row(item)
    assert row.badge == Badge("warning", "warning")
    assert row.state == "streaming, replay paused"
    assert row.circuit == Badge("half-open", "warning")
    assert row.reasons == ("WAL replay is paused",)


def test_a_down_replica_shows_dashes_and_no_reads() -> None:
    item = replica(
        status=Status.CRITICAL,
        reachable=False,
        healthy=False,
        circuit_state=CircuitState.OPEN,
        state=None,
        sync_state=None,
        write_lag_seconds=None,
        flush_lag_seconds=None,
        replay_lag_seconds=None,
        lag_seconds=None,
        lag_bytes=None,
        slot_name=None,
        slot_retained_bytes=None,
        reasons=("unreachable: connection refused",),
    )
    row = replica_row(item)
    assert row.down and row.state == "down" and not row.serves_reads
    assert row.badge == Badge("critical", "critical")
    assert row.circuit == Badge("open", "critical")
    assert {row.sync_state, row.lag, row.lag_bytes, row.slot, row.slot_retained} == {"-"}


def test_slot_rows() -> None:
    active = slot_row(
        SlotReport("replica1", "physical", active=True, status=Status.OK, reasons=(),
                   wal_status="reserved", retained_bytes=0, safe_wal_size=2 * MiB,
                   replica="replica")
    )  # fmt: skip
    assert (active.name, active.slot_type, active.active) == ("replica1", "physical", True)
    assert (active.wal_status, active.retained, active.safe_wal_size) == (
        "reserved",
        "0 B",
        "2.0 MiB",
    )
    assert active.replica == "replica" and active.badge == Badge("OK", "ok")
    stray = slot_row(
        SlotReport("old", "physical", active=False, status=Status.WARNING, reasons=("unused",))
    )
    assert (stray.wal_status, stray.retained, stray.safe_wal_size, stray.replica) == (
        "-",
        "-",
        "-",
        "-",
    )
    assert stray.badge == Badge("WARNING", "warning") and stray.reasons == ("unused",)


def test_standby_lines() -> None:
    row = StandbyRow(7, "walreceiver", client_addr="10.0.0.9", state="streaming", lag_bytes=2048)
    assert standby_line(row) == "walreceiver from 10.0.0.9: streaming, 2.0 KiB behind"
    assert standby_line(StandbyRow(8, "")) == "- from local: ?, - behind"


def test_audit_detail_only_for_a_setting_with_its_value() -> None:
    finding = AuditFinding("W104", "default", "little WAL kept", setting="wal_keep_size",
                           actual="0", recommended="1GB")  # fmt: skip
    assert audit_detail(finding) == "wal_keep_size = 0, recommended 1GB"
    assert audit_detail(AuditFinding("W001", "replica", "no slot")) == ""
    assert audit_detail(AuditFinding("W002", "replica", "x", setting="hot_standby")) == ""


def test_report_context() -> None:
    finding = AuditFinding("W001", "replica", "no slot")
    standby = StandbyRow(9, "stray", client_addr="10.0.0.5", state="catchup", lag_bytes=0)
    built = report(
        status=Status.WARNING,
        replicas=(replica(), replica("replica2", slot_name="replica2")),
        slots=(SlotReport("replica1", "physical", active=True, status=Status.OK, reasons=()),),
        audit=(finding,),
        unmatched_standbys=(standby,),
    )
    context = report_context(built)
    assert context["report"] is built and context["primary"] is built.primary
    assert context["overall"] == Badge("WARNING", "warning")
    assert context["primary_lsn"] == "1/A0"
    assert [row.alias for row in context["replicas"]] == ["replica", "replica2"]
    assert [slot.name for slot in context["slots"]] == ["replica1"]
    assert context["unmatched"] == ["stray from 10.0.0.5: catchup, 0 B behind"]
    assert context["audit"] == [(finding, "")]
    assert context["thresholds"] == {
        "warning": "5s",
        "critical": "30s",
        "critical_bytes": "100.0 MiB",
    }


def test_report_context_of_an_unreachable_primary() -> None:
    built = report(
        status=Status.UNKNOWN,
        primary=PrimaryObservation("default", reachable=False, error="refused"),
        messages=("primary default unreachable",),
    )
    context = report_context(built)
    assert context["primary_lsn"] is None
    assert context["overall"] == Badge("UNKNOWN", "unknown")
    assert context["slots"] == [] and context["audit"] == [] and context["unmatched"] == []
