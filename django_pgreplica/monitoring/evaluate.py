"""Pure evaluation: observations in, :class:`~.types.Report` out. No I/O, no clock.

How replica aliases are matched to ``pg_stat_replication`` rows is in :mod:`.matching`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ..health.breaker import CircuitState
from ..health.verdict import ineligibility_reason
from ..units import format_bytes
from .audit import audit
from .matching import Match, find_slot, match_standbys
from .types import (
    PrimaryObservation,
    ReplicaObservation,
    ReplicaReport,
    Report,
    SlotReport,
    SlotRow,
    StandbyRow,
    Status,
    Thresholds,
)


def evaluate_replica(
    obs: ReplicaObservation,
    match: Match | None,
    slot: SlotRow | None,
    *,
    primary: PrimaryObservation,
    thresholds: Thresholds,
    circuit: CircuitState = CircuitState.CLOSED,
    max_lag_seconds: float | None = None,
) -> ReplicaReport:
    """OK / WARNING / CRITICAL for one replica alias, with the reasons in words."""
    row = match.row if match else None
    problems: list[tuple[Status, str]] = []

    lag_seconds = replica_lag(obs.lag_seconds, row, obs.unreplayed_age)
    lag_bytes = row.lag_bytes if row is not None else None
    if lag_bytes is None and primary.current_lsn is not None and obs.replay_lsn is not None:
        lag_bytes = max(0, primary.current_lsn - obs.replay_lsn)
    receiver = obs.receiver
    state = row.state if row is not None and row.state else None
    if state is None and receiver is not None:
        state = receiver.status

    if not obs.reachable:
        # Only a row matched by REPLICA_APPLICATION_NAMES can still say something here.
        problems.append((Status.CRITICAL, f"unreachable: {obs.error or 'no answer'}"))
    elif not obs.in_recovery:
        problems.append((Status.CRITICAL, "promoted: not in recovery, it is a primary now"))
        lag_seconds = lag_bytes = None
    else:
        problems += _streaming_problems(obs, row)
        if (
            obs.system_identifier is not None
            and primary.system_identifier is not None
            and obs.system_identifier != primary.system_identifier
        ):
            problems.append(
                (Status.CRITICAL, "different system identifier: not a standby of this primary")
            )
        if obs.replay_paused:
            problems.append((Status.WARNING, "WAL replay is paused (pg_wal_replay_resume())"))
        problems += lag_problems(lag_seconds, lag_bytes, thresholds)

    if circuit is CircuitState.OPEN:
        problems.append((Status.WARNING, "circuit open: reads go to the primary"))
    elif circuit is CircuitState.HALF_OPEN:
        problems.append((Status.WARNING, "circuit half-open: ramping up after an outage"))

    router_reason = ineligibility_reason(
        reachable=obs.reachable,
        in_recovery=obs.in_recovery,
        lag_seconds=lag_seconds,
        max_lag_seconds=max_lag_seconds,
        error=obs.error,
    )
    healthy = router_reason is None and circuit is CircuitState.CLOSED
    return ReplicaReport(
        alias=obs.alias,
        status=max((level for level, _ in problems), default=Status.OK),
        reasons=tuple(text for _, text in problems),
        reachable=obs.reachable,
        healthy=healthy,
        circuit_state=circuit,
        in_recovery=obs.in_recovery,
        state=state,
        sync_state=row.sync_state if row is not None else None,
        application_name=row.application_name if row is not None else None,
        client_addr=row.client_addr if row is not None else None,
        matched_by=match.method if match else None,
        write_lag_seconds=row.write_lag if row is not None else None,
        flush_lag_seconds=row.flush_lag if row is not None else None,
        replay_lag_seconds=row.replay_lag if row is not None else None,
        lag_seconds=lag_seconds,
        lag_bytes=lag_bytes,
        receive_lsn=obs.receive_lsn,
        replay_lsn=obs.replay_lsn,
        replay_paused=obs.replay_paused,
        receiver_status=receiver.status if receiver is not None else None,
        slot_name=slot.slot_name if slot is not None else None,
        slot_retained_bytes=slot.retained_bytes if slot is not None else None,
        error=obs.error,
    )


# The primary's replay_lag is as of the standby's last reply, and the first reply after a
# stall may still carry the lag from before it: it can read up to one
# wal_receiver_status_interval (1 s as docs/postgresql.md recommends) low. Adding that keeps
# it an upper bound, as the replica's figure is: at worst 1 s high, never low.
REPLY_SLACK = 1.0


def replica_lag(
    replica_side: float | None, row: StandbyRow | None, floor: float | None = None
) -> float | None:
    """How far behind the replica is, in seconds, as an operator can act on it.

    The replica's own figure is an upper bound: ``now() - last replayed commit`` once it
    has anything left to replay, which after an idle spell counts the idle time too (a
    replica paused for 8 s would show the 40 s of quiet before). The primary knows better:
    ``replay_lag`` keeps growing while replay is stuck (PostgreSQL extrapolates it), as of
    the standby's last reply, so the reply's age is added; but the first reply after a
    stall may still carry the lag from before it. ``floor`` is a lower bound: the age of
    the newest WAL the replica holds unreplayed. The answer is the primary's view, kept
    within [floor, replica's figure]; 0 when the primary sees nothing left to replay.
    """
    if row is not None and row.lag_bytes == 0:
        return 0.0
    estimate = replica_side
    if row is not None and row.replay_lag is not None:
        primary_side = row.replay_lag + (row.reply_age or 0.0) + REPLY_SLACK
        estimate = primary_side if estimate is None else min(estimate, primary_side)
    if floor is not None and estimate is not None:
        estimate = max(estimate, floor if replica_side is None else min(floor, replica_side))
    return estimate


def _streaming_problems(
    obs: ReplicaObservation, row: StandbyRow | None
) -> list[tuple[Status, str]]:
    receiver = obs.receiver
    if receiver is None:
        return [(Status.CRITICAL, "not streaming: no WAL receiver is running")]
    if receiver.visible and receiver.status != "streaming":
        return [(Status.CRITICAL, f"not streaming: WAL receiver is {receiver.status}")]
    if row is not None and row.state is not None and row.state != "streaming":
        return [(Status.CRITICAL, f"not streaming: primary reports state {row.state}")]
    if not receiver.visible and (row is None or row.state is None):
        return [(Status.WARNING, "streaming state hidden: grant pg_monitor to the role")]
    return []


def lag_problems(
    lag_seconds: float | None, lag_bytes: int | None, thresholds: Thresholds
) -> list[tuple[Status, str]]:
    """The LAG_* settings: over critical seconds or bytes is CRITICAL, over warning seconds
    is WARNING. Strictly greater, as in the rules of ops/prometheus/alerts.yml."""
    problems: list[tuple[Status, str]] = []
    if lag_seconds is not None:
        if lag_seconds > thresholds.critical_seconds:
            problems.append(
                (
                    Status.CRITICAL,
                    f"replay lag {lag_seconds:.1f}s > {thresholds.critical_seconds:g}s",
                )
            )
        elif lag_seconds > thresholds.warning_seconds:
            problems.append(
                (Status.WARNING, f"replay lag {lag_seconds:.1f}s > {thresholds.warning_seconds:g}s")
            )
    if lag_bytes is not None and lag_bytes > thresholds.critical_bytes:
        problems.append(
            (
                Status.CRITICAL,
                f"{format_bytes(lag_bytes)} behind > {format_bytes(thresholds.critical_bytes)}",
            )
        )
    return problems


def evaluate_slot(slot: SlotRow, replica: str | None, thresholds: Thresholds) -> SlotReport:
    problems: list[tuple[Status, str]] = []
    if slot.wal_status == "lost":
        problems.append(
            (Status.CRITICAL, "WAL lost: its standby can never resume; rebuild it or drop the slot")
        )
    elif slot.wal_status == "unreserved":
        problems.append(
            (Status.WARNING, "past max_slot_wal_keep_size: WAL is lost at the next checkpoint")
        )
    retained = slot.retained_bytes or 0
    if not slot.active:
        problems.append((Status.WARNING, f"inactive, retaining {format_bytes(retained)} of WAL"))
    if retained > thresholds.critical_bytes:
        problems.append(
            (
                Status.WARNING,
                f"retains {format_bytes(retained)} > {format_bytes(thresholds.critical_bytes)}",
            )
        )
    return SlotReport(
        slot_name=slot.slot_name,
        slot_type=slot.slot_type,
        active=slot.active,
        status=max((level for level, _ in problems), default=Status.OK),
        reasons=tuple(text for _, text in problems),
        wal_status=slot.wal_status,
        retained_bytes=slot.retained_bytes,
        safe_wal_size=slot.safe_wal_size,
        replica=replica,
    )


def build_report(
    primary: PrimaryObservation,
    replicas: Sequence[ReplicaObservation],
    *,
    thresholds: Thresholds,
    checked_at: datetime,
    circuits: Mapping[str, CircuitState] | None = None,
    application_names: Mapping[str, str] | None = None,
    slot_hints: Mapping[str, str] | None = None,
    max_lag_seconds: float | None = None,
    configured_replicas: int | None = None,
    partial: bool = False,
) -> Report:
    """The whole report. ``partial``: only some replica aliases were observed (``--database``),
    so slots and standby rows of the others are left out rather than reported as strays.
    ``slot_hints`` (alias -> slot name seen before) attributes a slot to a replica that is
    down now; failing that, a slot named like its application_name or its alias is taken.
    ``configured_replicas`` sizes the audit's recommendations (default: observed).
    """
    circuits = circuits or {}
    hints = slot_hints or {}
    matches = match_standbys(primary, replicas, application_names)
    names = application_names or {}
    slot_owner: dict[str, str] = {}
    slot_of: dict[str, SlotRow | None] = {}
    # Reachable replicas first: they say which slot is theirs; the guesses for a down one
    # (slot last seen, or named like its application_name or alias) must not steal it.
    for obs in sorted(replicas, key=lambda o: not o.reachable):
        guesses = [g for g in (hints.get(obs.alias), names.get(obs.alias), obs.alias) if g]
        slot = find_slot(obs, matches.get(obs.alias), primary.slots, guesses, set(slot_owner))
        slot_of[obs.alias] = slot
        if slot is not None:
            slot_owner.setdefault(slot.slot_name, obs.alias)
    reports = []
    for obs in replicas:
        match = matches.get(obs.alias)
        slot = slot_of[obs.alias]
        reports.append(
            evaluate_replica(
                obs,
                match,
                slot,
                primary=primary,
                thresholds=thresholds,
                circuit=circuits.get(obs.alias, CircuitState.CLOSED),
                max_lag_seconds=max_lag_seconds,
            )
        )
    slots = tuple(
        evaluate_slot(slot, slot_owner.get(slot.slot_name), thresholds)
        for slot in primary.slots
        if not partial or slot.slot_name in slot_owner
    )
    claimed = {m.row.pid for m in matches.values()}
    unmatched = () if partial else tuple(r for r in primary.standbys if r.pid not in claimed)

    messages: list[str] = []
    if not primary.reachable:
        status = Status.UNKNOWN
        messages.append(f"primary {primary.alias} unreachable: {primary.error or 'no answer'}")
    else:
        parts = [r.status for r in reports] + [s.status for s in slots]
        status = max(parts, default=Status.OK)
        if primary.in_recovery:
            status = Status.CRITICAL
            messages.append(
                f"primary {primary.alias} is in recovery: it is a standby, not the primary"
            )
    findings = audit(
        primary,
        replicas,
        configured_replicas if configured_replicas is not None else len(replicas),
        partial=partial,
    )
    return Report(
        checked_at=checked_at,
        status=status,
        primary=primary,
        thresholds=thresholds,
        replicas=tuple(reports),
        slots=slots,
        audit=findings,
        unmatched_standbys=unmatched,
        messages=tuple(messages),
    )
