"""check_replication() against the real primary and its two streaming replicas.

Faults (pause, stop, promote) go through the ``pgreplica`` fixture, which heals the cluster
after the test.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from django_pgreplica.monitoring import Status, Thresholds, check_replication
from django_pgreplica.monitoring.render import report_to_dict
from django_pgreplica.testing.plugin import replay_paused, wait_for_replay
from tests.monitoring_support import RoleRunner, login_role, primary_unreachable, write_rows

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

NODES = {"replica": "replica1", "replica2": "replica2"}


def test_healthy_cluster_is_ok_and_every_alias_finds_its_standby() -> None:
    wait_for_replay()
    report = check_replication()
    assert report.status is Status.OK, report_to_dict(report)
    assert report.primary.reachable and report.primary.current_lsn
    for item in report.replicas:
        node = NODES[item.alias]
        assert item.matched_by == "slot"  # alias "replica" is node "replica1"
        assert item.application_name == node
        assert item.slot_name == node
        assert (item.state, item.sync_state, item.receiver_status) == (
            "streaming",
            "async",
            "streaming",
        )
        assert item.in_recovery and item.healthy and not item.replay_paused
        assert item.lag_seconds == 0.0
        assert item.lag_bytes is not None and item.lag_bytes < 1024 * 1024
        assert item.circuit_state.label == "closed"
    assert {s.slot_name: s.replica for s in report.slots} == {
        "replica1": "replica",
        "replica2": "replica2",
    }
    assert report.unmatched_standbys == ()
    # The local cluster follows docs/postgresql.md except for laptop-sized WAL retention.
    assert [f.code for f in report.audit] == ["W104"]


def test_matching_by_application_name_and_by_setting() -> None:
    from tests.support import pgreplica_settings

    with pgreplica_settings(REPLICA_APPLICATION_NAMES={"replica": "replica1"}):
        report = check_replication()
    assert report.replica("replica").matched_by == "setting"
    assert report.replica("replica2").matched_by == "slot"


def test_paused_replay_with_writes_shows_byte_lag_and_warns() -> None:
    wait_for_replay()
    with replay_paused("replica"):
        write_rows(5)
        report = check_replication()
        item = report.replica("replica")
        assert item.replay_paused
        assert item.lag_bytes and item.lag_bytes > 0
        assert item.status is Status.WARNING
        assert any("paused" in reason for reason in item.reasons)
        assert report.replica("replica2").status is Status.OK
        assert report.status is Status.WARNING

        time.sleep(1.2)  # replay delay grows while paused (the primary is not idle)
        strict = Thresholds(warning_seconds=0.2, critical_seconds=1.0, critical_bytes=1)
        item = check_replication(["replica"], thresholds=strict).replica("replica")
        assert item.status is Status.CRITICAL
        assert item.lag_seconds is not None and item.lag_seconds > 1.0
        assert any(r.startswith("replay lag") for r in item.reasons)
        assert any("behind" in r for r in item.reasons)
    wait_for_replay()
    assert check_replication(["replica"]).status is Status.OK


def test_stopped_replica_is_critical_fast_and_its_slot_is_flagged(pgreplica: Any) -> None:
    check_replication()  # remembers which slot each replica uses
    pgreplica.stop("replica")
    started = time.monotonic()
    report = check_replication()
    elapsed = time.monotonic() - started
    item = report.replica("replica")
    assert item.status is Status.CRITICAL
    assert not item.reachable and not item.healthy
    assert item.reasons[0].startswith("unreachable: ")
    assert item.slot_name == "replica1"  # attributed though the replica is down
    slot = next(s for s in report.slots if s.slot_name == "replica1")
    assert (slot.active, slot.replica, slot.status) == (False, "replica", Status.WARNING)
    assert "W106" in {f.code for f in report.audit}
    assert report.replica("replica2").status is Status.OK
    assert report.status is Status.CRITICAL
    assert elapsed < 2.0, elapsed


def test_promoted_replica_is_critical(pgreplica: Any) -> None:
    pgreplica.promote("replica2")
    report = check_replication()
    item = report.replica("replica2")
    assert item.status is Status.CRITICAL
    assert item.in_recovery is False
    assert item.reasons[0].startswith("promoted")
    assert not item.healthy
    assert report.replica("replica").status is Status.OK
    assert report.status is Status.CRITICAL


def test_unreachable_primary_is_unknown() -> None:
    with primary_unreachable():
        started = time.monotonic()
        report = check_replication()
        elapsed = time.monotonic() - started
    assert report.status is Status.UNKNOWN
    assert not report.primary.reachable
    assert "refused" in (report.primary.error or "")
    assert report.messages[0].startswith("primary default unreachable")
    # The replicas still answer (they still stream from the real primary).
    assert all(item.reachable and item.in_recovery for item in report.replicas)
    assert elapsed < 2.0, elapsed


def test_a_pg_monitor_role_sees_everything_a_superuser_does() -> None:
    with login_role("pgreplica_test_monitor", "pg_monitor") as role:
        runner = RoleRunner(role)
        try:
            report = check_replication(run=runner)
        finally:
            runner.close()
    assert report.status is Status.OK, report_to_dict(report)
    for item in report.replicas:
        assert item.state == "streaming" and item.sync_state == "async"
        assert item.receiver_status == "streaming"
        assert item.matched_by == "slot"
    assert "W108" not in {f.code for f in report.audit}


def test_a_role_without_pg_monitor_gets_a_warning_not_a_crash() -> None:
    with login_role("pgreplica_test_nobody") as role:
        runner = RoleRunner(role)
        try:
            report = check_replication(run=runner)
        finally:
            runner.close()
    assert report.status is Status.WARNING
    assert "W108" in {f.code for f in report.audit}
    for item in report.replicas:
        assert item.reachable and item.in_recovery
        assert item.matched_by == "slot"  # primary_slot_name needs no privilege
        assert any("pg_monitor" in reason for reason in item.reasons)
