"""Configuration audit against the settings docs/postgresql.md recommends. Pure.

Findings are advice: they are listed by ``replication_status`` and never change its exit
code, so a deliberate deviation (a laptop-sized ``wal_keep_size``) does not page anyone.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..units import pg_setting_bytes, pg_setting_seconds
from .types import AuditFinding, PrimaryObservation, ReplicaObservation, ServerSetting

# wal_keep_size = 2GB: a replica streaming without a slot rides out a short outage.
RECOMMENDED_WAL_KEEP_SIZE = 2048 * 1024 * 1024
# max_standby_streaming_delay = 30s, the default MAX_LAG_SECONDS: one long replica query
# cannot hold replay back past the point where the router stops reading from the replica.
MAX_STANDBY_DELAY = 30.0
# A hot standby pauses recovery when one of these is lower than on its primary.
MUST_NOT_BE_LOWER_ON_STANDBY = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


def recommended_wal_senders(replicas: int) -> int:
    """max_wal_senders and max_replication_slots: replicas * 2 + 1, one per replica plus room
    for reconnecting replicas and a pg_basebackup (docs/postgresql.md)."""
    return replicas * 2 + 1


def _int(item: ServerSetting | None) -> int | None:
    if item is None:
        return None
    try:
        return int(item.setting)
    except ValueError:
        return None


def audit(
    primary: PrimaryObservation,
    replicas: Sequence[ReplicaObservation],
    replica_count: int,
    *,
    partial: bool = False,
) -> tuple[AuditFinding, ...]:
    """Findings for the primary's and each reachable replica's settings.

    ``replica_count`` is the number of configured replicas (sizes max_wal_senders);
    ``partial`` skips the primary-wide findings (only some replicas were asked).
    """
    findings: list[AuditFinding] = []
    if primary.reachable and not partial:
        findings += _audit_primary(primary, replica_count)
    if primary.reachable:
        findings += _audit_privileges(primary)
    for obs in replicas:
        if obs.reachable and obs.in_recovery:
            findings += _audit_replica(obs, primary)
    return tuple(findings)


def _audit_primary(primary: PrimaryObservation, replica_count: int) -> list[AuditFinding]:
    conf = primary.settings
    node = primary.alias
    found: list[AuditFinding] = []
    if not conf:
        return found
    wal_level = conf.get("wal_level")
    if wal_level is not None and wal_level.setting not in ("replica", "logical"):
        found.append(
            AuditFinding(
                "W101",
                node,
                "wal_level must be 'replica' (or 'logical') for streaming replication.",
                "wal_level",
                wal_level.setting,
                "replica",
            )
        )
    wanted = recommended_wal_senders(replica_count)
    for name in ("max_wal_senders", "max_replication_slots"):
        value = _int(conf.get(name))
        if value is not None and value < wanted:
            found.append(
                AuditFinding(
                    "W102" if name == "max_wal_senders" else "W103",
                    node,
                    f"{name} = {value} is below replicas * 2 + 1 = {wanted}: a reconnecting "
                    "replica or a base backup may find no free one.",
                    name,
                    str(value),
                    f">= {wanted}",
                )
            )
    keep = conf.get("wal_keep_size")
    keep_bytes = pg_setting_bytes(keep.setting, keep.unit) if keep is not None else None
    if keep is not None and keep_bytes is not None and keep_bytes < RECOMMENDED_WAL_KEEP_SIZE:
        found.append(
            AuditFinding(
                "W104",
                node,
                "wal_keep_size is below 2GB (see docs/postgresql.md): a replica that falls "
                "behind without a slot may need WAL the primary already recycled.",
                "wal_keep_size",
                _display(keep),
                "2GB",
            )
        )
    slot_keep = conf.get("max_slot_wal_keep_size")
    unlimited = slot_keep is not None and pg_setting_bytes(slot_keep.setting, slot_keep.unit) == -1
    if primary.slots and unlimited:
        found.append(
            AuditFinding(
                "W105",
                node,
                "max_slot_wal_keep_size = -1: a slot of a dead replica retains WAL until the "
                "primary's disk is full.",
                "max_slot_wal_keep_size",
                "-1",
                "4GB",
            )
        )
    for slot in primary.slots:
        if not slot.active:  # holds WAL from restart_lsn on, growing with every write
            found.append(
                AuditFinding(
                    "W106",
                    node,
                    f"slot {slot.slot_name} is inactive and retains WAL: start its replica, or "
                    f"drop it (SELECT pg_drop_replication_slot('{slot.slot_name}')) if it is "
                    "gone for good.",
                    "pg_replication_slots",
                    f"{slot.slot_name}: inactive",
                    "active",
                )
            )
    sync_names = conf.get("synchronous_standby_names")
    if sync_names is not None and sync_names.setting.strip():
        found.append(
            AuditFinding(
                "W107",
                node,
                "synchronous replication is on: every commit waits for a standby, and writes "
                "stall while none answers (synchronous_standby_names is set; django-pgreplica "
                "assumes asynchronous replication, see docs/postgresql.md).",
                "synchronous_standby_names",
                sync_names.setting,
                "''",
            )
        )
    return found


def _audit_privileges(primary: PrimaryObservation) -> list[AuditFinding]:
    if any(row.state is None for row in primary.standbys):
        return [
            AuditFinding(
                "W108",
                primary.alias,
                "pg_stat_replication details are hidden from this role: GRANT pg_monitor TO "
                "it (or connect as a superuser) for states, lags and sync states.",
                "pg_monitor",
                "not granted",
                "granted",
            )
        ]
    return []


def _audit_replica(obs: ReplicaObservation, primary: PrimaryObservation) -> list[AuditFinding]:
    conf = obs.settings
    node = obs.alias
    found: list[AuditFinding] = []
    for name, code, why in (
        ("hot_standby", "W201", "the replica cannot serve reads"),
        (
            "hot_standby_feedback",
            "W202",
            "replica queries get cancelled when the primary's VACUUM removes rows they need",
        ),
    ):
        item = conf.get(name)
        if item is not None and item.setting != "on":
            found.append(AuditFinding(code, node, f"{name} is off: {why}.", name, "off", "on"))
    delay = conf.get("max_standby_streaming_delay")
    seconds = pg_setting_seconds(delay.setting, delay.unit) if delay is not None else None
    # -1 waits forever; above 30s a long replica query holds replay back that long.
    if delay is not None and seconds is not None and not 0 <= seconds <= MAX_STANDBY_DELAY:
        found.append(
            AuditFinding(
                "W203",
                node,
                "max_standby_streaming_delay lets replica queries hold back replay for longer "
                "than 30s (the default MAX_LAG_SECONDS, see docs/postgresql.md), so lag can "
                "build up behind a long query.",
                "max_standby_streaming_delay",
                _display(delay),
                "30s",
            )
        )
    uses_slot = obs.primary_slot_name or (obs.receiver.slot_name if obs.receiver else None)
    if not uses_slot:
        found.append(
            AuditFinding(
                "W204",
                node,
                "the replica streams without a replication slot: after a long outage it may "
                "need WAL the primary recycled (pg_basebackup -R -C -S <slot>).",
                "primary_slot_name",
                "''",
                "a slot",
            )
        )
    for name in MUST_NOT_BE_LOWER_ON_STANDBY:
        mine, theirs = _int(conf.get(name)), _int(primary.settings.get(name))
        if mine is not None and theirs is not None and mine < theirs:
            found.append(
                AuditFinding(
                    "W205",
                    node,
                    f"{name} = {mine} is lower than on the primary ({theirs}): recovery pauses "
                    "when the primary uses more.",
                    name,
                    str(mine),
                    f">= {theirs}",
                )
            )
    return found


def _display(item: ServerSetting) -> str:
    """As PostgreSQL's SHOW would put it, roughly: '64MB', '30000ms', '4 x 8kB'."""
    if not item.unit:
        return item.setting
    if item.unit[0].isdigit():
        return f"{item.setting} x {item.unit}"
    return f"{item.setting}{item.unit}"
