"""Pure replication evaluation: observations in, statuses out. No database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from django_pgreplica.health.breaker import CircuitState
from django_pgreplica.monitoring import (
    PrimaryObservation,
    ReplicaObservation,
    Report,
    ServerSetting,
    SlotRow,
    StandbyRow,
    Status,
    Thresholds,
    WalReceiver,
    build_report,
    match_standbys,
)
from django_pgreplica.monitoring.audit import audit
from django_pgreplica.monitoring.evaluate import (
    REPLY_SLACK,
    evaluate_slot,
    lag_problems,
    replica_lag,
)
from django_pgreplica.monitoring.queries import receiver_application_name
from django_pgreplica.monitoring.render import render_text, report_to_dict
from django_pgreplica.units import format_bytes, pg_setting_bytes, pg_setting_seconds

MiB = 1024 * 1024
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
THRESHOLDS = Thresholds(warning_seconds=5, critical_seconds=30, critical_bytes=100 * MiB)
CURRENT = 0x3000000


def standby(pid: int, name: str, **kw: Any) -> StandbyRow:
    defaults: dict[str, Any] = {
        "client_addr": "127.0.0.1",
        "state": "streaming",
        "sync_state": "async",
        "replay_lsn": CURRENT,
        "lag_bytes": 0,
    }
    return StandbyRow(pid, name, **{**defaults, **kw})


def slot(name: str, pid: int | None, **kw: Any) -> SlotRow:
    return SlotRow(name, "physical", active=pid is not None, active_pid=pid, **kw)


def primary(**kw: Any) -> PrimaryObservation:
    defaults: dict[str, Any] = {
        "reachable": True,
        "in_recovery": False,
        "current_lsn": CURRENT,
        "system_identifier": 42,
        "standbys": (standby(101, "replica1"), standby(102, "replica2")),
        "slots": (
            slot("replica1", 101, retained_bytes=0, wal_status="reserved"),
            slot("replica2", 102, retained_bytes=0, wal_status="reserved"),
        ),
    }
    return PrimaryObservation("default", **{**defaults, **kw})


def replica(alias: str, node: str, **kw: Any) -> ReplicaObservation:
    defaults: dict[str, Any] = {
        "reachable": True,
        "in_recovery": True,
        "receive_lsn": CURRENT,
        "replay_lsn": CURRENT,
        "lag_seconds": 0.0,
        "replay_paused": False,
        "receiver": WalReceiver(
            visible=True, status="streaming", slot_name=node, application_name=node
        ),
        "server_addr": "127.0.0.1",
        "cluster_name": node,
        "primary_slot_name": node,
        "system_identifier": 42,
    }
    return ReplicaObservation(alias, **{**defaults, **kw})


def healthy_pair() -> list[ReplicaObservation]:
    return [replica("replica", "replica1"), replica("replica2", "replica2")]


def report(
    p: PrimaryObservation | None = None, replicas: list[ReplicaObservation] | None = None, **kw: Any
) -> Report:
    return build_report(
        p or primary(),
        healthy_pair() if replicas is None else replicas,
        thresholds=kw.pop("thresholds", THRESHOLDS),
        checked_at=NOW,
        **kw,
    )


# --- matching ------------------------------------------------------------------------------


def test_replicas_are_matched_through_their_slot_even_when_names_differ() -> None:
    found = match_standbys(primary(), healthy_pair())
    assert {alias: (m.row.application_name, m.method) for alias, m in found.items()} == {
        "replica": ("replica1", "slot"),
        "replica2": ("replica2", "slot"),
    }


def test_without_slots_the_receivers_application_name_matches() -> None:
    p = primary(slots=())
    obs = [replace(o, primary_slot_name=None) for o in healthy_pair()]
    found = match_standbys(p, obs)
    assert {a: m.method for a, m in found.items()} == {
        "replica": "application_name",
        "replica2": "application_name",
    }
    assert found["replica"].row.pid == 101


def test_on_separate_hosts_the_address_matches_when_names_are_default() -> None:
    p = primary(
        slots=(),
        standbys=(
            standby(101, "walreceiver", client_addr="10.0.0.11"),
            standby(102, "walreceiver", client_addr="10.0.0.12"),
        ),
    )
    obs = [
        replica(
            "replica",
            "walreceiver",
            primary_slot_name=None,
            server_addr="10.0.0.11",
            cluster_name=None,
        ),
        replica(
            "replica2",
            "walreceiver",
            primary_slot_name=None,
            server_addr="10.0.0.12",
            cluster_name=None,
        ),
    ]
    found = match_standbys(p, obs)
    assert {a: (m.row.pid, m.method) for a, m in found.items()} == {
        "replica": (101, "address"),
        "replica2": (102, "address"),
    }


def test_ambiguous_rows_are_left_unmatched_rather_than_guessed() -> None:
    p = primary(slots=(), standbys=(standby(101, "walreceiver"), standby(102, "walreceiver")))
    obs = [
        replace(
            o,
            primary_slot_name=None,
            receiver=WalReceiver(visible=True, status="streaming", application_name="walreceiver"),
        )
        for o in healthy_pair()
    ]
    assert match_standbys(p, obs) == {}
    built = report(p, obs)
    assert {r.alias: r.matched_by for r in built.replicas} == {"replica": None, "replica2": None}
    # Still judged: byte lag from WAL positions, state from the receiver.
    assert all(r.lag_bytes == 0 and r.state == "streaming" for r in built.replicas)
    assert built.status is Status.OK
    assert len(built.unmatched_standbys) == 2


def test_the_explicit_setting_wins_over_everything() -> None:
    found = match_standbys(primary(), healthy_pair(), {"replica": "replica2"})
    assert found["replica"].row.pid == 102
    assert found["replica"].method == "setting"
    assert "replica2" not in found  # its row is taken; its slot points at the same pid


def test_a_down_replica_matched_by_setting_keeps_the_primarys_numbers() -> None:
    p = primary(standbys=(standby(101, "replica1", lag_bytes=123),))
    obs = [replica("replica", "replica1", reachable=False, error="timeout")]
    item = report(p, obs, application_names={"replica": "replica1"}).replica("replica")
    assert item.status is Status.CRITICAL
    assert item.lag_bytes == 123


# --- replica status ------------------------------------------------------------------------


def test_healthy_cluster_is_ok() -> None:
    built = report()
    assert built.status is Status.OK
    item = built.replica("replica")
    assert item.healthy and item.streaming and item.reasons == ()
    assert item.slot_name == "replica1"
    assert item.application_name == "replica1"


@pytest.mark.parametrize(
    ("lag", "expected"),
    [
        (0.0, Status.OK),
        (5.0, Status.OK),
        (5.1, Status.WARNING),
        (30.0, Status.WARNING),
        (30.5, Status.CRITICAL),
    ],
)
def test_lag_thresholds_are_strict(lag: float, expected: Status) -> None:
    behind = standby(101, "replica1", lag_bytes=4096, replay_lag=lag, reply_age=0.0)
    obs = [replica("replica", "replica1", lag_seconds=lag)]
    assert report(primary(standbys=(behind,)), obs).replica("replica").status is expected


def test_lag_after_an_idle_spell_is_the_primarys_view_not_the_last_commits_age() -> None:
    # Paused 8 s after 40 s of quiet: the replica's own figure counts the quiet too; the
    # primary's replay_lag (7.5 s at the standby's reply 0.8 s ago) does not.
    behind = standby(101, "replica1", lag_bytes=160, replay_lag=7.5, reply_age=0.8)
    obs = [replica("replica", "replica1", lag_seconds=48.5, replay_paused=True)]
    item = report(primary(standbys=(behind,)), obs).replica("replica")
    assert item.lag_seconds == pytest.approx(8.3 + REPLY_SLACK)
    assert item.status is Status.WARNING and item.healthy


def test_replica_lag_takes_the_smaller_bound_and_zero_when_nothing_is_missing() -> None:
    assert replica_lag(3.0, None) == 3.0  # no row: the replica's figure
    assert replica_lag(None, standby(1, "r", replay_lag=2.0, lag_bytes=10)) == 2.0 + REPLY_SLACK
    assert replica_lag(1.0, standby(1, "r", replay_lag=2.0, reply_age=5.0, lag_bytes=10)) == 1.0
    assert replica_lag(12.0, standby(1, "r", replay_lag=None, lag_bytes=10)) == 12.0
    assert replica_lag(48.5, standby(1, "r", replay_lag=None, lag_bytes=0)) == 0.0
    # The first reply after a stall still says 4 ms; the newest unreplayed WAL came 1.2 s ago.
    stale_reply = standby(1, "r", replay_lag=0.004, reply_age=0.0, lag_bytes=10)
    assert replica_lag(9.0, stale_reply, floor=1.2) == 1.2
    assert replica_lag(0.5, stale_reply, floor=1.2) == 0.5  # never above the replica's own


def test_byte_lag_over_the_critical_size_is_critical() -> None:
    p = primary(standbys=(standby(101, "replica1", lag_bytes=101 * MiB),))
    item = report(p, [replica("replica", "replica1")]).replica("replica")
    assert item.status is Status.CRITICAL
    assert item.lag_bytes == 101 * MiB
    assert any("101.0 MiB behind" in reason for reason in item.reasons)


def test_byte_lag_comes_from_wal_positions_when_no_row_matches() -> None:
    p = primary(standbys=(), slots=())
    obs = [replica("replica", "replica1", replay_lsn=CURRENT - 2048)]
    assert report(p, obs).replica("replica").lag_bytes == 2048


def test_paused_replay_warns_even_without_lag() -> None:
    item = report(replicas=[replica("replica", "replica1", replay_paused=True)]).replica("replica")
    assert item.status is Status.WARNING
    assert "paused" in item.reasons[0]


def test_unreachable_replica_is_critical_and_not_healthy() -> None:
    obs = [replica("replica", "replica1", reachable=False, error="connection refused")]
    item = report(replicas=obs).replica("replica")
    assert item.status is Status.CRITICAL
    assert not item.healthy
    assert item.reasons == ("unreachable: connection refused",)


def test_promoted_replica_is_critical() -> None:
    obs = [replica("replica", "replica1", in_recovery=False, lag_seconds=None, receiver=None)]
    built = report(primary(standbys=(), slots=()), obs)
    item = built.replica("replica")
    assert item.status is Status.CRITICAL
    assert item.reasons[0].startswith("promoted")
    assert item.lag_bytes is None  # its own WAL, not the primary's
    assert built.status is Status.CRITICAL


@pytest.mark.parametrize(
    ("receiver", "row_state", "reason"),
    [
        (None, None, "no WAL receiver"),
        (WalReceiver(visible=True, status="waiting"), None, "receiver is waiting"),
        (WalReceiver(visible=True, status="streaming"), "catchup", "state catchup"),
    ],
)
def test_not_streaming_is_critical(
    receiver: WalReceiver | None, row_state: str | None, reason: str
) -> None:
    standbys = () if row_state is None else (standby(101, "replica1", state=row_state),)
    p = primary(standbys=standbys)
    item = report(p, [replica("replica", "replica1", receiver=receiver)]).replica("replica")
    assert item.status is Status.CRITICAL
    assert reason in item.reasons[0]


def test_hidden_receiver_details_without_pg_monitor_only_warn() -> None:
    p = primary(standbys=(StandbyRow(101, "replica1"),))  # all NULL but pid and name
    obs = [replica("replica", "replica1", receiver=WalReceiver(visible=False))]
    built = report(p, obs)
    item = built.replica("replica")
    assert item.status is Status.WARNING
    assert "pg_monitor" in item.reasons[0]
    assert [f.code for f in built.audit if f.code == "W108"] == ["W108"]


def test_a_standby_of_another_cluster_is_critical() -> None:
    obs = [replica("replica", "replica1", system_identifier=7)]
    assert report(replicas=obs).replica("replica").status is Status.CRITICAL


@pytest.mark.parametrize(
    ("state", "healthy"),
    [(CircuitState.CLOSED, True), (CircuitState.OPEN, False), (CircuitState.HALF_OPEN, False)],
)
def test_circuit_state_is_shown_and_an_open_one_warns(state: CircuitState, healthy: bool) -> None:
    item = report(circuits={"replica": state}).replica("replica")
    assert item.circuit_state is state
    assert item.healthy is healthy
    assert item.status is (Status.OK if healthy else Status.WARNING)


def test_healthy_follows_max_lag_seconds_not_the_warning_threshold() -> None:
    p = primary(standbys=(standby(101, "replica1", lag_bytes=4096, replay_lag=10.0),))
    obs = [replica("replica", "replica1", lag_seconds=10.0)]
    item = report(p, obs, max_lag_seconds=30.0).replica("replica")
    assert item.status is Status.WARNING and item.healthy
    item = report(p, obs, max_lag_seconds=8.0).replica("replica")
    assert not item.healthy


# --- report-wide ---------------------------------------------------------------------------


def test_unreachable_primary_is_unknown_but_replicas_are_still_judged() -> None:
    p = PrimaryObservation("default", reachable=False, error="connection refused")
    obs = [replace(o, receiver=WalReceiver(visible=True, status="waiting")) for o in healthy_pair()]
    built = report(p, obs)
    assert built.status is Status.UNKNOWN
    assert built.messages == ("primary default unreachable: connection refused",)
    assert all(r.status is Status.CRITICAL and r.lag_bytes is None for r in built.replicas)


def test_primary_alias_pointing_at_a_standby_is_critical() -> None:
    built = report(PrimaryObservation("default", reachable=True, in_recovery=True), [])
    assert built.status is Status.CRITICAL
    assert "in recovery" in built.messages[0]


def test_slots() -> None:
    lost = evaluate_slot(slot("a", None, wal_status="lost"), None, THRESHOLDS)
    assert lost.status is Status.CRITICAL
    inactive = evaluate_slot(slot("b", None, retained_bytes=5 * MiB), "replica", THRESHOLDS)
    assert inactive.status is Status.WARNING
    assert inactive.reasons == ("inactive, retaining 5.0 MiB of WAL",)
    big = evaluate_slot(slot("c", 7, retained_bytes=200 * MiB), None, THRESHOLDS)
    assert big.status is Status.WARNING
    assert evaluate_slot(slot("d", 7, retained_bytes=0), None, THRESHOLDS).status is Status.OK


def test_a_down_replicas_slot_is_attributed_through_the_hint() -> None:
    p = primary(
        standbys=(standby(102, "replica2"),),
        slots=(
            slot("replica1", None, retained_bytes=MiB, wal_status="extended"),
            slot("replica2", 102, retained_bytes=0),
        ),
    )
    obs = [replica("replica", "replica1", reachable=False, error="x"), healthy_pair()[1]]
    built = report(p, obs, slot_hints={"replica": "replica1"})
    assert built.replica("replica").slot_retained_bytes == MiB
    assert built.slots[0].replica == "replica"
    assert built.slots[0].status is Status.WARNING
    assert built.status is Status.CRITICAL


def test_partial_report_leaves_out_other_replicas_slots_and_rows() -> None:
    built = report(replicas=[replica("replica", "replica1")], partial=True)
    assert [s.slot_name for s in built.slots] == ["replica1"]
    assert built.unmatched_standbys == ()


def test_lag_problems_wording() -> None:
    assert lag_problems(None, None, THRESHOLDS) == []
    assert lag_problems(6.0, 0, THRESHOLDS) == [(Status.WARNING, "replay lag 6.0s > 5s")]


# --- audit ---------------------------------------------------------------------------------


def settings(**values: tuple[str, str | None] | str) -> dict[str, ServerSetting]:
    out = {}
    for name, value in values.items():
        setting, unit = value if isinstance(value, tuple) else (value, None)
        out[name] = ServerSetting(name, setting, unit)
    return out


# The production settings of docs/postgresql.md.
RECOMMENDED_PRIMARY = settings(
    wal_level="replica",
    max_wal_senders="5",
    max_replication_slots="5",
    wal_keep_size=("2048", "MB"),
    max_slot_wal_keep_size=("4096", "MB"),
    synchronous_standby_names="",
    max_connections="200",
)
RECOMMENDED_REPLICA = settings(
    hot_standby="on",
    hot_standby_feedback="on",
    max_standby_streaming_delay=("30000", "ms"),
    max_connections="200",
)


def codes(p: PrimaryObservation, obs: list[ReplicaObservation], count: int = 2) -> list[str]:
    return [finding.code for finding in audit(p, obs, count)]


def test_the_recommended_settings_pass_the_audit() -> None:
    obs = [replace(o, settings=RECOMMENDED_REPLICA) for o in healthy_pair()]
    assert codes(primary(settings=RECOMMENDED_PRIMARY), obs) == []


def test_audit_flags_departures_from_the_recommended_settings() -> None:
    bad_primary = settings(
        wal_level="minimal",
        max_wal_senders="3",
        max_replication_slots="2",
        wal_keep_size=("0", "MB"),
        max_slot_wal_keep_size=("-1", "MB"),
        synchronous_standby_names="FIRST 1 (replica1)",
        max_connections="200",
    )
    p = primary(
        settings=bad_primary,
        slots=(slot("old", None, retained_bytes=MiB), slot("replica1", 101, retained_bytes=0)),
    )
    bad_replica = settings(
        hot_standby="on",
        hot_standby_feedback="off",
        max_standby_streaming_delay=("-1", "ms"),
        max_connections="100",
    )
    obs = [
        replica(
            "replica",
            "replica1",
            settings=bad_replica,
            primary_slot_name=None,
            receiver=WalReceiver(visible=True, status="streaming"),
        )
    ]
    found = audit(p, obs, 2)
    assert [f.code for f in found] == [
        "W101",
        "W102",
        "W103",
        "W104",
        "W105",
        "W106",
        "W107",
        "W202",
        "W203",
        "W204",
        "W205",
    ]
    by_code = {f.code: f for f in found}
    assert by_code["W102"].recommended == ">= 5"  # 2 replicas * 2 + 1
    assert by_code["W104"].actual == "0MB"
    assert all(f.node == "replica" for f in found if f.code.startswith("W2"))
    # A recommendation names its reason and where it is explained, not an internal source.
    for code in ("W104", "W107", "W203"):
        assert "docs/postgresql.md" in by_code[code].message, code


def test_audit_skips_primary_wide_findings_for_a_partial_check() -> None:
    p = primary(settings=settings(max_wal_senders="1"))
    assert codes(p, [], 2) == ["W102"]
    assert [f.code for f in audit(p, [], 2, partial=True)] == []


def test_setting_units() -> None:
    assert pg_setting_bytes("64", "MB") == 64 * MiB
    assert pg_setting_bytes("2", "8kB") == 16384
    assert pg_setting_bytes("-1", "MB") == -1
    assert pg_setting_bytes("on", None) is None
    assert pg_setting_seconds("30000", "ms") == 30.0
    assert pg_setting_seconds("-1", "ms") == -1
    assert pg_setting_seconds("2", "min") == 120.0


# --- helpers and rendering -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("conninfo", "cluster_name", "expected"),
    [
        (
            "user=postgres host=10.0.0.1 port=5432 application_name=replica1 "
            "fallback_application_name=walreceiver sslmode=prefer",
            "x",
            "replica1",
        ),
        ("user=postgres fallback_application_name=node_b host=h", "x", "node_b"),
        ("user=postgres application_name='my app' host=h", None, "my app"),
        ("user=postgres host=h", "replica9", "replica9"),
        ("user=postgres host=h", "", "walreceiver"),
        (None, "replica3", "replica3"),
    ],
)
def test_receiver_application_name(
    conninfo: str | None, cluster_name: str | None, expected: str
) -> None:
    assert receiver_application_name(conninfo, cluster_name) == expected


def test_format_bytes() -> None:
    assert [format_bytes(v) for v in (None, 0, 1023, 1536, 100 * MiB, 3 * 1024**4)] == [
        "-",
        "0 B",
        "1023 B",
        "1.5 KiB",
        "100.0 MiB",
        "3.0 TiB",
    ]


def test_report_renders_as_text_and_json() -> None:
    obs = healthy_pair()
    obs[1] = replica("replica2", "replica2", reachable=False, error="connection refused")
    built = report(replicas=obs)
    text = render_text(built)
    assert text.splitlines()[0] == "Replication status: CRITICAL"
    assert "replica2: unreachable: connection refused" in text
    line = next(line for line in text.splitlines() if line.startswith("replica2 "))
    assert "CRITICAL" in line and "down" in line
    data = json.loads(json.dumps(report_to_dict(built)))
    assert data["status"] == "CRITICAL" and data["exit_code"] == 2
    assert data["replicas"][0]["circuit_state"] == "closed"
    assert data["replicas"][0]["replay_lsn"] == "0/3000000"
    assert data["primary"]["current_lsn"] == "0/3000000"
    assert data["checked_at"] == "2026-01-02T03:04:05+00:00"


def test_a_down_replicas_slot_is_found_by_its_name_without_a_hint() -> None:
    p = primary(
        standbys=(standby(101, "replica1"),),
        slots=(slot("replica1", 101, retained_bytes=0), slot("replica2", None, retained_bytes=9)),
    )
    obs = [healthy_pair()[0], replica("replica2", "replica2", reachable=False, error="x")]
    built = report(p, obs)
    assert built.replica("replica2").slot_name == "replica2"
    assert [s.replica for s in built.slots] == ["replica", "replica2"]
    # A guess never takes a slot a reachable replica says is its own.
    obs = [healthy_pair()[0], replica("replica1", "x", reachable=False, error="x")]
    built = report(p, obs)
    assert built.replica("replica1").slot_name is None
